"""Connect misbehaving on a real socket, a real ``connect-probe`` process watching it.

One sidecar and one ``FaultyConnect`` serve the whole module: each case switches the fake to a
fault, then checks that while it lasts every probe answers within ``PROBE_BUDGET`` with 503 and the
right reason, that the sidecar's memory stays bounded, and that the next good poll recovers. The
faults and their reason codes are listed in ``tests.faulty_connect.FAULTS``.
"""

import asyncio
import contextlib
import gc
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from app.clock import SystemClock
from app.connect.client import (
    ConnectBadResponse,
    ConnectClient,
    ConnectTimeout,
    ConnectUnreachable,
    build_http_client,
)
from app.poller import Poller
from app.settings import Settings
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.faulty import (
    FAULTS,
    LONG_NAME,
    ODD_FAILED,
    ODD_NAMES,
    FaultyConnect,
    gzip_bomb,
)
from tools.procs import RunningSidecar, proc_status, run_sidecar

pytestmark = pytest.mark.process  # a real sidecar against FaultyConnect on real sockets

POLL_INTERVAL = 0.2
TIMEOUT = 1.0  # the whole-request deadline: a silent or trickling Connect fails the poll after 1 s
PROBE_BUDGET = 0.1  # seconds per probe, during any fault
MIB = 1024 * 1024
# Set for this module's sidecar: reading the default 64 MiB cap takes ~1 s on a busy 2-core
# machine, as long as TIMEOUT; the memory envelope at the default cap is `make bench`'s T6.
MAX_RESPONSE_BYTES = 16 * MIB
# Peak RSS while a fault lasts: the sidecar's own ~60 MiB plus at most one capped body and slack.
PEAK_RSS_LIMIT = 160 * MIB
GOOD = {f"sink-{index}": status(f"sink-{index}", tasks=2) for index in range(3)}


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    return {key: kib * 1024 for key, kib in proc_status(pid, ("VmRSS", "VmHWM")).items()}


def reset_peak_rss(pid: int) -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0); where /proc
    forbids it, the peak stays the process's lifetime peak, which must be within bounds too."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class Prober:
    """Probes like the kubelet (a new connection each time) and keeps every latency."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(
            base_url=url, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.latencies: list[float] = []

    def get(self, path: str) -> httpx.Response:
        started = time.perf_counter()
        response = self.client.get(path)
        self.latencies.append(time.perf_counter() - started)
        return response

    def until(
        self, done: Callable[[httpx.Response], bool], deadline: float, path: str = "/ready"
    ) -> tuple[httpx.Response, list[httpx.Response]]:
        """Probe every 20 ms until ``done``; returns the last answer and all of them."""
        seen: list[httpx.Response] = []
        end = time.monotonic() + deadline
        while True:
            response = self.get(path)
            seen.append(response)
            if done(response) or time.monotonic() > end:
                return response, seen
            time.sleep(0.02)


def assert_fast(latencies: list[float]) -> None:
    """Every probe within ``PROBE_BUDGET``. On a host busier than its CPUs (shared CI, tests in
    parallel) one probe may lose the CPU to another process; a stalled sidecar loop shows as
    several slow probes in a row (they are 20 ms apart), which still fails."""
    slow = sorted(latency for latency in latencies if latency >= PROBE_BUDGET)
    overloaded = os.getloadavg()[0] > (os.cpu_count() or 1)
    if overloaded and len(slow) <= 1 and all(latency < 5 * PROBE_BUDGET for latency in slow):
        return
    assert not slow, f"{len(slow)} of {len(latencies)} probes slower than {PROBE_BUDGET}s: {slow}"


def first_code(response: httpx.Response) -> str | None:
    reasons = response.json()["reasons"]
    return reasons[0]["code"] if reasons else None


# --- in-process: the client's limits, without a process ----------------------------------------
def _stream(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        block = b" " * chunk
        for _ in range(total // chunk):
            yield block

    return chunks()


@pytest.mark.anyio
async def test_a_capped_body_is_freed_at_once_not_by_the_garbage_collector() -> None:
    """A failed poll's exceptions sit in a reference cycle (asyncio.TaskGroup) holding the
    reading frame: the buffer must be emptied when the cap is hit, not when gc runs."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_stream(24 * MIB))

    settings = Settings(max_response_bytes=8 * MIB)
    gc.disable()
    tracemalloc.start()
    try:
        async with build_http_client(settings, httpx.MockTransport(handler)) as http:
            poller = Poller(
                ConnectClient(http, settings),
                SystemClock(),
                poll_interval=1,
                health_recheck_interval=300,
            )
            for _ in range(3):
                state = await poller.poll_once()
                assert state.failure is not None
                assert state.failure.code == "connect_bad_response"
                current, peak = tracemalloc.get_traced_memory()
                assert peak > 8 * MIB  # it did read up to the cap...
                assert current < 2 * MIB  # ...and kept nothing of it
                tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()
        gc.enable()


@pytest.mark.anyio
async def test_compressed_answers_are_refused_not_inflated() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept-encoding"])
        return httpx.Response(200, content=gzip_bomb(), headers={"content-encoding": "gzip, gzip"})

    settings = Settings()
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        with pytest.raises(ConnectBadResponse, match="compressed body"):
            await ConnectClient(http, settings).get("/connectors")
    assert seen == ["identity"]


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/", "/health"])
async def test_small_endpoints_have_a_small_cap(path: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_stream(2 * MIB))

    settings = Settings()
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        with pytest.raises(ConnectBadResponse, match="more than 1048576 bytes"):
            await ConnectClient(http, settings).get(path)


@pytest.mark.anyio
async def test_a_request_cut_short_gets_the_next_one_a_fresh_connection_pool() -> None:
    """httpcore can leave a cancelled request's connection counted as busy for good; once the
    pool is full every poll times out against a healthy Connect (the soak hit it after ~3
    minutes of faults). So after a request is cut short, the next one starts a new client."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={})

    settings = Settings()
    made: list[httpx.AsyncClient] = []

    def renew() -> httpx.AsyncClient:
        made.append(build_http_client(settings, httpx.MockTransport(handler)))
        return made[-1]

    async with build_http_client(settings, httpx.MockTransport(handler)) as given:
        client = ConnectClient(given, settings, renew=renew)
        with pytest.raises(ConnectTimeout):
            await client.get("/connectors")
        assert made == []
        await client.get("/connectors")  # the first request after: on a new pool
        assert len(made) == 1
        assert given.is_closed
        await client.get("/health")  # nothing went wrong since: no new pool
        assert len(made) == 1
        assert client.renewals == 1
        await client.aclose()
        assert made[0].is_closed


@pytest.mark.anyio
async def test_a_pool_is_not_renewed_under_a_request_in_flight() -> None:
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            await release.wait()
            return httpx.Response(200, json={})
        raise httpx.ConnectError("refused", request=request)

    settings = Settings()
    made: list[httpx.AsyncClient] = []

    def renew() -> httpx.AsyncClient:
        made.append(build_http_client(settings, httpx.MockTransport(handler)))
        return made[-1]

    async with build_http_client(settings, httpx.MockTransport(handler)) as given:
        client = ConnectClient(given, settings, renew=renew)
        slow = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectUnreachable):
            await client.get("/fails")
        with pytest.raises(ConnectUnreachable):
            await client.get("/fails")  # /slow still runs on the old pool: keep it
        assert made == []
        release.set()
        assert (await slow).status_code == 200
        with pytest.raises(ConnectUnreachable):
            await client.get("/fails")
        assert len(made) == 1
        await client.aclose()


# --- a real process on a real socket ----------------------------------------------------------
@pytest.fixture(scope="module")
def connect() -> Iterator[FaultyConnect]:
    with FaultyConnect() as fake:
        fake.set_connectors(GOOD)
        yield fake


@pytest.fixture(scope="module")
def sidecar_process(
    connect: FaultyConnect, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    env = {
        "CONNECT_PROBE_CONNECT_URL": connect.url,
        "CONNECT_PROBE_WORKER_ID": THIS_WORKER,
        "CONNECT_PROBE_POLL_INTERVAL": str(POLL_INTERVAL),
        "CONNECT_PROBE_TIMEOUT": str(TIMEOUT),
        "CONNECT_PROBE_MAX_RESPONSE_BYTES": str(MAX_RESPONSE_BYTES),
    }
    with run_sidecar(env, tmp_path_factory.mktemp("faults")) as running:
        for path in ("/ready", "/live", "/healthz", "/status", "/metrics") * 2:
            httpx.get(f"{running.url}{path}")  # first calls of a fresh process load code
        yield running


def assert_clean_log(log: str) -> None:
    """No traceback, no forged line, no 10,000-character line: every line one of ours."""
    assert "Traceback" not in log
    assert "\x1b" not in log
    assert "line\nbreak" not in log
    for line in log.splitlines():
        assert len(line) < 2000, line[:200]
        assert line[:4].isdigit(), line[:200]  # starts with a date


@pytest.fixture
def sidecar(sidecar_process: RunningSidecar) -> Iterator[RunningSidecar]:
    """The module's sidecar; what it logged during the test must be clean."""
    start = sidecar_process.log_size()
    yield sidecar_process
    assert_clean_log(sidecar_process.output(since=start))


@pytest.fixture
def prober(sidecar: RunningSidecar) -> Iterator[Prober]:
    """The timing client. This test process's own garbage collector is paused meanwhile: after
    a few hundred tests a full collection here takes 100+ ms and would be counted against the
    sidecar."""
    probe = Prober(sidecar.url)
    gc.collect()
    gc.disable()
    try:
        yield probe
    finally:
        gc.enable()
        probe.client.close()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_a_503_with_its_reason_in_milliseconds_and_recovers(
    fault: str, connect: FaultyConnect, sidecar: RunningSidecar, prober: Prober
) -> None:
    expected = FAULTS[fault]
    healthy, _ = prober.until(lambda r: r.status_code == 200, deadline=10)
    assert healthy.status_code == 200, healthy.text
    pid = sidecar.process.pid
    baseline = memory(pid)["VmRSS"]
    reset_peak_rss(pid)
    prober.latencies.clear()

    connect.set_fault(fault)
    try:
        # A poll or two, bounded by TIMEOUT: until then the previous (good) answer stands.
        failing, seen = prober.until(
            lambda r: r.status_code == 503 and first_code(r) == expected,
            deadline=TIMEOUT + 4 * POLL_INTERVAL + 3,
        )
        assert failing.status_code == 503, failing.text
        assert first_code(failing) == expected, failing.text
        # Nothing else on the way: no 500, no other reason — except that a timeout fault hits
        # GET /health too, and a poll whose listing was answered just before the switch reports
        # the /health half of the same fault (worker_unhealthy) first.
        on_the_way = {expected} | ({"worker_unhealthy"} if expected == "connect_timeout" else set())
        for response in seen[:-1]:
            assert response.status_code == 200 or first_code(response) in on_the_way, response.text
        during = [prober.get("/ready") for _ in range(10)]
        assert {(r.status_code, first_code(r)) for r in during} == {(503, expected)}
        body = failing.json()
        assert body["reasons"][0]["message"], body
        assert len(failing.content) < 10 * 1024  # the kubelet reads at most 10 KiB
        assert prober.get("/live").status_code == 200  # STARTUP_GRACE: never restart for this
        assert prober.get("/healthz").status_code == 200  # the poll loop itself is fine
        assert prober.client.get("/status").status_code == 200  # not a probe: not timed
        peak = memory(pid)["VmHWM"]
    finally:
        connect.set_fault(None)

    recovered, _ = prober.until(lambda r: r.status_code == 200, deadline=TIMEOUT + 3)
    assert recovered.status_code == 200, recovered.text
    assert_fast(prober.latencies)
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / MIB:.0f} MiB (baseline {baseline / MIB:.0f})"
    if sidecar.process.poll() is not None:
        pytest.fail(f"connect-probe exited with {sidecar.process.returncode}")


def test_the_200_mb_body_fails_the_poll_at_the_cap_with_memory_bounded(
    connect: FaultyConnect, sidecar: RunningSidecar, prober: Prober
) -> None:
    """The connector listing (the one large endpoint) streamed without end: cut at the cap."""
    pid = sidecar.process.pid
    prober.until(lambda r: r.status_code == 200, deadline=10)
    baseline = memory(pid)["VmRSS"]
    reset_peak_rss(pid)
    connect.set_fault("huge_connectors")
    try:
        failing, _ = prober.until(lambda r: first_code(r) == "connect_bad_response", deadline=5)
        time.sleep(1)  # a few more polls of 64 MiB each
        peak = memory(pid)["VmHWM"]
    finally:
        connect.set_fault(None)
    message = failing.json()["reasons"][0]["message"]
    assert f"more than {MAX_RESPONSE_BYTES} bytes (MAX_RESPONSE_BYTES)" in message
    assert "GET /connectors" in message
    assert peak < PEAK_RSS_LIMIT
    assert peak - baseline < MAX_RESPONSE_BYTES + 40 * MIB
    prober.until(lambda r: r.status_code == 200, deadline=5)
    time.sleep(1)
    after = memory(pid)["VmRSS"]
    assert after < baseline + 32 * MIB, (
        f"RSS {after / MIB:.0f} MiB after, {baseline / MIB:.0f} before"
    )


def test_odd_connector_names_are_escaped_in_urls_bodies_and_logs(
    connect: FaultyConnect, sidecar: RunningSidecar, prober: Prober
) -> None:
    connect.targets.clear()
    start = sidecar.log_size()
    connect.set_fault("odd_names_legacy")  # Connect < 2.3: one status request per name
    try:
        failing, _ = prober.until(lambda r: first_code(r) == "connector_state", deadline=5)
    finally:
        connect.set_fault(None)
    targets = set(connect.targets)
    for name in ODD_NAMES:
        assert f"/connectors/{quote(name, safe='')}/status" in targets, name[:40]
    reasons = failing.json()["reasons"]
    shown = {reason["connector"] for reason in reasons}
    assert "a/b/../c" in shown
    assert "line\nbreak\x1b[31m" in shown  # JSON-escaped in the body, intact once parsed
    assert LONG_NAME not in shown  # cut to 200 characters in probe bodies
    assert any(name.startswith("xxx") and len(name) <= 200 for name in shown)
    assert len(shown) == len(ODD_FAILED)  # each FAILED connector (and its task), no other
    prober.until(lambda r: r.status_code == 200, deadline=5)
    # The FAILED connector's change is logged, escaped by app.logs.safe (the fixture checks
    # that nothing unescaped was).
    assert "line\\nbreak" in sidecar.output(since=start)
