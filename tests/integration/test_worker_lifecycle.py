"""A worker starting (port closed -> REST up -> healthy) and a worker killed with SIGKILL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tools.realconnect.cluster import Broker, port_open, start_broker
from tools.realconnect.configs import file_source
from tools.realconnect.probe import Answer
from tools.realconnect.session import RealConnect
from tools.realconnect.wait import GiveUp, wait_until

pytestmark = pytest.mark.realconnect

# A real broker waits group.initial.rebalance.delay.ms (3 s by default) before the first join of an
# empty group; a worker's "REST up, /health 503 starting" phase lasts at least that long.
INITIAL_REBALANCE_DELAY_MS = 5_000
NOT_READY_WHILE_STARTING = {
    "no_poll_yet",
    "connect_unreachable",
    "connect_timeout",
    "connect_http_error",
    "connect_bad_response",
    "connect_starting",
    "worker_starting",
    "worker_unhealthy",
}


@pytest.fixture(scope="module")
def slow_join_broker(realconnect: RealConnect) -> Iterator[Broker]:
    """A second broker that delays first joins, like a real one does by default."""
    broker = start_broker(
        realconnect.artifacts,
        realconnect.run,
        name="broker-slow-join",
        initial_rebalance_delay_ms=INITIAL_REBALANCE_DELAY_MS,
    )
    yield broker
    broker.stop()


@dataclass(frozen=True)
class Seen:
    at: float  # seconds after the worker was launched
    phase: str  # the worker as the test saw it: port-closed, rest-up, healthy
    ready: Answer
    live: Answer

    def __str__(self) -> str:
        ready = f"ready={self.ready.code} {self.ready.codes}"
        return f"{self.at:5.1f}s {self.phase:11} {ready} live={self.live.code}"


def test_worker_starting_port_closed_then_rest_up_then_healthy(
    realconnect: RealConnect, slow_join_broker: Broker
) -> None:
    cluster = realconnect.cluster("starting", broker=slow_join_broker)
    worker = cluster.new_worker()
    sidecar = realconnect.probe("starting", worker, {"WORKER_ID": worker.worker_id}).start()
    try:
        # Before the worker exists: connection refused -> not ready; live (startup grace).
        closed = sidecar.wait_answer(
            "/ready", lambda a: "connect_unreachable" in a.codes, what="connect_unreachable"
        )
        assert closed.code == 503
        assert sidecar.live().code == 200

        worker.launch()
        launched = time.monotonic()
        seen: list[Seen] = []

        def observe() -> bool:
            if not worker.alive:
                raise GiveUp(f"worker died: {worker.log_path}")
            if not port_open(worker.port):
                phase = "port-closed"
            else:
                # Connect holds /health while starting: a short timeout means "not yet".
                phase = "healthy" if worker.client.is_healthy(timeout=1.0) else "rest-up"
            ready, live = sidecar.ready(), sidecar.live()
            seen.append(Seen(time.monotonic() - launched, phase, ready, live))
            return ready.code == 200

        wait_until(observe, timeout=90, interval=0.2, what="the sidecar to say ready")
        realconnect.record("worker_start_seconds_slow_join", time.monotonic() - launched)
        timeline = "\n".join(map(str, seen))
        print(f"worker start as the sidecar saw it:\n{timeline}")  # noqa: T201 - shown with -s

        assert all(s.live.code == 200 for s in seen), timeline
        not_ready = [s for s in seen if s.ready.code != 200]
        assert all(s.ready.code == 503 for s in not_ready), timeline
        assert all(set(s.ready.codes) <= NOT_READY_WHILE_STARTING for s in not_ready), timeline
        assert seen[0].phase == "port-closed", timeline
        assert seen[0].ready.codes == ["connect_unreachable"], timeline
        # REST answers well before the first join completes; the sidecar is not ready meanwhile.
        rest_up = [s for s in seen[:-1] if s.phase == "rest-up"]  # the last one said ready
        assert len(rest_up) >= 3, timeline
        assert all(s.ready.code == 503 for s in rest_up), timeline
        # Ready only once Connect's own /health says 200.
        assert worker.client.is_healthy(), timeline
        assert sidecar.status().code == 200
    finally:
        sidecar.stop()
        cluster.stop()


def test_worker_killed_not_ready_at_once_not_live_after_live_grace(
    realconnect: RealConnect,
) -> None:
    live_grace = 4.0
    cluster = realconnect.cluster("killed")
    [worker] = cluster.start_workers(1)
    settings = {
        "WORKER_ID": worker.worker_id,
        "STARTUP_GRACE": "0",
        "LIVE_GRACE": str(live_grace),
        "TIMEOUT": "2",
    }
    sidecar = realconnect.probe("killed", worker, settings).start()
    try:
        name = "killed-source"
        worker.client.create(name, file_source(realconnect.run.path / "killed.txt", "killed"))
        worker.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=1)
        sidecar.wait_ready(True)
        assert sidecar.live().code == 200

        worker.kill()  # SIGKILL: no shutdown, no UNASSIGNED records, REST gone
        killed = time.monotonic()
        not_ready = sidecar.wait_ready(False, timeout=5)
        after = time.monotonic() - killed
        assert after < 2.5, f"not ready only {after:.1f}s after SIGKILL: {not_ready}"
        assert "connect_unreachable" in not_ready.codes, not_ready
        still_live = sidecar.live()
        assert still_live.code == 200, f"live must survive LIVE_GRACE: {still_live}"

        dead = sidecar.wait_live(False, timeout=live_grace + 5)
        after = time.monotonic() - killed
        assert after >= live_grace - 1, f"not live after {after:.1f}s < LIVE_GRACE: {dead}"
        assert dead.codes == ["connect_unreachable"], dead
    finally:
        sidecar.stop()
        cluster.stop()
