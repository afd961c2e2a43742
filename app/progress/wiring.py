"""Starts the progress checks from the app's lifespan — or nothing at all when they are off.

``attach`` is the only entry point the rest of the app uses. With KAFKA_BOOTSTRAP_SERVERS unset
it returns None before importing anything that loads librdkafka (a test pins this).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from app.answers import AnswerCache
from app.clock import Clock
from app.connect.client import ConnectClient
from app.liveness import KafkaEvidence
from app.pollstate import PollState
from app.progress.config import ProgressConfig
from app.progress.loop import ProgressLoop
from app.progress.metrics import READ_BUCKETS, READ_DURATION, ProgressCollector
from app.progress.reading import Reader
from app.progress.verdicts import amend, ready_findings, status_section
from app.readiness import Findings, Judging
from app.restart import Restarter, TargetFinder
from app.rules import Rules
from app.settings import Settings
from app.verdict import Verdict

logger = logging.getLogger("app.progress")


class ProgressRuntime:
    """What the answer cache asks of the progress checks: a readiness check, the liveness
    amendment (LIVE_FAIL_ON_STALL), a /status section."""

    def __init__(self, loop: ProgressLoop, settings: Settings) -> None:
        self.loop = loop
        self._kafka = {
            "bootstrap_servers": settings.kafka_bootstrap_servers,
            "security_protocol": settings.kafka_security_protocol,
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "username": settings.kafka_username,
            "password_file": "<set>" if settings.kafka_password_file is not None else None,
        }
        self.task: asyncio.Task[None] | None = None
        self.on_close: Callable[[], None] | None = None  # e.g. stop the Kafka client's process

    @property
    def version(self) -> int:
        """Grows whenever a verdict could change: a new read, or the restarter's schedule."""
        restarter = self.loop.restarter
        return self.loop.view.version + (restarter.notes_version if restarter else 0)

    def ready_check(self, judging: Judging) -> Findings:
        restarter = self.loop.restarter
        notes = restarter.notes() if restarter is not None else None
        return ready_findings(judging, self.loop.view, self.loop.config, notes)

    def amend_live(self, verdict: Verdict, now: float, wall_offset: float) -> Verdict:
        restarter = self.loop.restarter
        notes = restarter.notes() if restarter is not None else None
        return amend(verdict, self.loop.view, self.loop.config, now, wall_offset, notes)

    def kafka_evidence(self) -> KafkaEvidence | None:
        """The sidecar's own Kafka reads for the zombie check: current for two intervals and a
        read's deadline after the latest success (one late read does not withdraw it)."""
        view, config = self.loop.view, self.loop.config
        if view.reachable_since is None or view.reachable_at is None:
            return None
        fresh_for = 2 * config.interval + config.read_timeout + self.loop.read_slack
        return KafkaEvidence(view.reachable_since, view.reachable_at, fresh_for)

    def status_section(self, now: float, wall_offset: float) -> Mapping[str, Any]:
        restarter = self.loop.restarter
        return status_section(
            self.loop.view,
            self.loop.config,
            self._kafka,
            wall_offset,
            restarter.status_view(now, wall_offset) if restarter else {"enabled": False},
        )

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.loop.close()
        if self.on_close is not None:
            self.on_close()


def build(
    settings: Settings,
    client: ConnectClient,
    rules: Rules,
    clock: Clock,
    state_source: Callable[[], PollState],
    reader: Reader,
    registry: CollectorRegistry | None = None,
) -> ProgressRuntime:
    """The runtime around ``reader`` (tests pass a fake one); nothing started yet."""
    config = ProgressConfig.from_settings(settings)

    def restarter(finder: TargetFinder) -> Restarter:
        return Restarter(
            client, rules, settings, clock, finder=finder, subject="stalled or not consuming"
        )

    histogram = (
        Histogram(
            READ_DURATION,
            "How long each progress read of Kafka took (successful or not).",
            buckets=READ_BUCKETS,
            registry=registry,
        )
        if registry is not None
        else None
    )
    loop = ProgressLoop(
        config,
        rules,
        client,
        reader,
        clock,
        state_source,
        restarter_factory=restarter if settings.auto_restart_stalled else None,
        on_read=histogram.observe if histogram is not None else None,
    )
    runtime = ProgressRuntime(loop, settings)
    if registry is not None:
        registry.register(
            ProgressCollector(
                lambda: loop.view,
                lambda: loop.restart_counts if loop.restarter is not None else None,
            )
        )
    return runtime


def attach(
    settings: Settings,
    client: ConnectClient,
    answers: AnswerCache,
    clock: Clock,
    registry: CollectorRegistry | None,
) -> ProgressRuntime | None:
    """Start the progress loop beside the poller and hook it into ``answers``; None when off."""
    if settings.kafka_bootstrap_servers is None:
        return None
    from app.progress.isolated import IsolatedReader  # librdkafka: in its child process only

    rules = Rules.from_settings(settings, answers.identity)
    reader = IsolatedReader(settings)
    runtime = build(settings, client, rules, clock, lambda: answers.state, reader, registry)
    runtime.on_close = reader.close
    answers.progress = runtime
    runtime.task = asyncio.create_task(runtime.loop.run(), name="kafka-progress")
    logger.info(
        "progress checks on: RUNNING sink tasks of this worker, Kafka %s (%s) every %gs, "
        "stall window %gs, allowed lag %d%s",
        settings.kafka_bootstrap_servers,
        settings.kafka_security_protocol,
        settings.progress_interval,
        settings.stall_window,
        settings.allowed_lag,
        ", auto-restart of stalled tasks on" if settings.auto_restart_stalled else "",
    )
    return runtime
