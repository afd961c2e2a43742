"""A worker starting (port closed -> REST up -> healthy) and a worker killed with SIGKILL, on each
Connect release of ``CONNECT_VERSIONS``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from tools.realconnect.artifacts import CONNECT_VERSIONS
from tools.realconnect.cluster import port_open
from tools.realconnect.configs import file_source
from tools.realconnect.probe import Answer
from tools.realconnect.session import RealConnect
from tools.realconnect.wait import GiveUp, wait_until

pytestmark = pytest.mark.realkafka

VERSIONS = pytest.mark.parametrize("version", CONNECT_VERSIONS, ids=lambda v: f"connect-{v}")
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


@dataclass(frozen=True)
class Seen:
    at: float  # seconds after the worker was launched
    phase: str  # the worker as the test saw it: port-closed, rest-up, healthy
    ready: Answer
    live: Answer

    def __str__(self) -> str:
        ready = f"ready={self.ready.code} {self.ready.codes}"
        return f"{self.at:5.1f}s {self.phase:11} {ready} live={self.live.code}"


@VERSIONS
def test_worker_starting_port_closed_then_rest_up_then_healthy(
    realconnect: RealConnect, version: str
) -> None:
    """The session broker waits Kafka's default 3 s before a new group's first rebalance, so the
    "REST up, group not joined" phase is as long as in production."""
    cluster = realconnect.cluster(f"starting-{version}", version=version)
    worker = cluster.new_worker()
    name = f"starting-{version}"
    sidecar = realconnect.probe(name, worker, {"WORKER_ID": worker.worker_id}).start()
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
            elif worker.has_health:
                # Connect holds /health while starting: a short timeout means "not yet".
                phase = "healthy" if worker.client.is_healthy(timeout=1.0) else "rest-up"
            else:
                phase = "joined" if worker.joined() else "rest-up"
            ready, live = sidecar.ready(), sidecar.live()
            seen.append(Seen(time.monotonic() - launched, phase, ready, live))
            return ready.code == 200

        wait_until(observe, timeout=90, interval=0.2, what="the sidecar to say ready")
        realconnect.record(f"worker_ready_seconds_{version}", time.monotonic() - launched)
        timeline = "\n".join(map(str, seen))
        print(f"worker start as the sidecar saw it:\n{timeline}")  # noqa: T201 - shown with -s

        assert all(s.live.code == 200 for s in seen), timeline
        not_ready = [s for s in seen if s.ready.code != 200]
        assert all(s.ready.code == 503 for s in not_ready), timeline
        assert all(set(s.ready.codes) <= NOT_READY_WHILE_STARTING for s in not_ready), timeline
        assert seen[0].phase == "port-closed", timeline
        assert seen[0].ready.codes == ["connect_unreachable"], timeline
        rest_up = [s for s in seen[:-1] if s.phase == "rest-up"]  # the last one said ready
        if worker.has_health:
            # REST answers well before the first join; not ready until Connect's /health says 200.
            assert len(rest_up) >= 3, timeline
            assert all(s.ready.code == 503 for s in rest_up), timeline
            assert worker.client.is_healthy(), timeline
        else:
            # Before 3.9 nothing in the REST API tells "not joined yet": GET /health is a JSON
            # 404 and GET /connectors answers [] at once, so an empty worker is ready as soon as
            # REST answers. What the sidecar can check, it does: /health is "unsupported".
            code, body = worker.client.health(timeout=5)
            assert code == 404, (code, body)
            health = sidecar.status().body["connect"]["health"]
            assert health["status"] == "unsupported", health
        assert sidecar.status().code == 200
    finally:
        sidecar.stop()
        cluster.stop()


@VERSIONS
def test_worker_killed_not_ready_at_once_not_live_after_live_grace(
    realconnect: RealConnect, version: str
) -> None:
    live_grace = 4.0
    cluster = realconnect.cluster(f"killed-{version}", version=version)
    [worker] = cluster.start_workers(1)
    settings = {
        "WORKER_ID": worker.worker_id,
        "STARTUP_GRACE": "0",
        "LIVE_GRACE": str(live_grace),
        "TIMEOUT": "2",
    }
    sidecar = realconnect.probe(f"killed-{version}", worker, settings).start()
    try:
        name = "killed-source"
        source = realconnect.run.path / f"killed-{version}.txt"
        worker.client.create(name, file_source(source, "killed"))
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
