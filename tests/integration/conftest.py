"""Fixtures of the real-Kafka tier: a real Apache Kafka broker, real Connect workers, the sidecar.

Package: the official jars are resolved with Maven once (cached outside the repository), one
KRaft broker is started for this whole directory (stopped when its last test is done, so it does
not weigh on the rest of the suite) (Kafka's default ``group.initial.rebalance.delay.ms``
of 3 s, so a worker's "REST up, not joined yet" phase is as long as in production), and every
process is stopped by PID at the end, also on a failure, Ctrl-C or SIGTERM.
Logs of the run are kept (and their directory printed) when a test failed, removed otherwise
(``CONNECT_PROBE_REALCONNECT_KEEP_LOGS=1`` keeps them always).

Java 17 (a JDK) and Maven are required: without them every test here fails with a one-line
message saying what to install. ``CONNECT_VERSIONS`` lists the Connect releases tested.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator

import pytest

from tools.realconnect.artifacts import CONNECT_VERSIONS, SetupError, ensure_artifacts
from tools.realconnect.cluster import RunDir, start_broker
from tools.realconnect.probe import probe_executable
from tools.realconnect.procs import raise_on_termination, restore_handlers, stop_all
from tools.realconnect.session import RealConnect

KEEP_LOGS_ENV = "CONNECT_PROBE_REALCONNECT_KEEP_LOGS"
# Kafka's default: the broker waits this long before the first rebalance of an empty group.
INITIAL_REBALANCE_DELAY_MS = 3_000
RUN_KEY = pytest.StashKey["RealConnect"]()


@pytest.fixture(scope="package")
def realconnect(request: pytest.FixtureRequest) -> Iterator[RealConnect]:
    """Fetches/builds the artifacts (or fails saying what to install) and starts the broker."""
    previous_handlers = raise_on_termination()  # SIGTERM/SIGHUP -> teardown, like Ctrl-C
    keep_logs = bool(os.environ.get(KEEP_LOGS_ENV))
    run: RunDir | None = None
    try:
        started = time.monotonic()
        try:
            artifacts = ensure_artifacts(CONNECT_VERSIONS)
            probe_bin = probe_executable()
        except (SetupError, FileNotFoundError) as exc:
            pytest.fail(f"real Kafka tests cannot run: {exc}", pytrace=False)
        setup_seconds = time.monotonic() - started
        run = RunDir("tests")
        # sasl_ssl: a second listener (SCRAM-SHA-512 over TLS) the progress checks read through.
        broker = start_broker(
            artifacts, run, initial_rebalance_delay_ms=INITIAL_REBALANCE_DELAY_MS, sasl_ssl=True
        )
        ctx = RealConnect(artifacts, run, broker, probe_bin)
        ctx.record("setup_seconds", setup_seconds)
        ctx.record("broker_start_seconds", broker.start_seconds)
        request.config.stash[RUN_KEY] = ctx
        yield ctx
        ctx.record_rss("broker", broker.rss_kib())
    finally:
        stop_all()
        restore_handlers(previous_handlers)
        if run is not None:
            ctx_or_none = request.config.stash.get(RUN_KEY, None)
            failed = (
                request.session.testsfailed > 0
                or bool(_interrupted)
                or (ctx_or_none is not None and ctx_or_none.failed)
            )
            if not failed and not keep_logs:
                run.remove()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure: remember it (logs are kept) and name the log directory in the report."""
    report = yield
    ctx = item.config.stash.get(RUN_KEY, None)
    if ctx is not None and report.failed:
        ctx.failed = True
        report.sections.append(("realconnect logs", f"worker/broker/sidecar logs: {ctx.run}"))
    return report


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Ctrl-C or SIGTERM: keep the logs of the interrupted run (teardown comes after this hook)."""
    _interrupted.append(True)


_interrupted: list[bool] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ctx = terminalreporter.config.stash.get(RUN_KEY, None)
    if ctx is None:
        return
    if ctx.metrics:
        shown = ", ".join(f"{key}={value:.1f}" for key, value in sorted(ctx.metrics.items()))
        terminalreporter.write_line(f"realconnect measurements: {shown}")
    if ctx.failed or _interrupted or os.environ.get(KEEP_LOGS_ENV):
        terminalreporter.write_line(f"realconnect logs kept in {ctx.run}")
