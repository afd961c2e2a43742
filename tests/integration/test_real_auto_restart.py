"""Auto-restart against real Connect workers (the newest 4.x, and 3.6.x: no ``/health``, but
KIP-745's restart plan): a FileStream sink task FAILED on a missing directory comes back by itself
once the directory exists — and with AUTO_RESTART off, nothing is sent.

The worker logs every REST request with its User-Agent (Jetty's request log), so the sidecar's own
requests (``kafka-connect-probe``) are told apart from the test's (``python-httpx``): the test
asserts exactly which POSTs the sidecar sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.realconnect.artifacts import DEFAULT_CONNECT
from tools.realconnect.cluster import Worker
from tools.realconnect.configs import file_sink
from tools.realconnect.rest import Connectors
from tools.realconnect.session import RealConnect
from tools.realconnect.wait import wait_until

pytestmark = pytest.mark.realkafka

# Seconds as the backoff unit: attempts at 0, 2, 8, 18... seconds, capped at 10 s between them.
AUTO_RESTART = {
    "AUTO_RESTART": "true",
    "AUTO_RESTART_BACKOFF_UNIT": "1",
    "AUTO_RESTART_BACKOFF_MAX": "10",
}
SIDECAR_AGENT = '"kafka-connect-probe"'


@pytest.fixture(scope="module", params=[DEFAULT_CONNECT, "3.6.2"], ids=lambda v: f"connect-{v}")
def worker(realconnect: RealConnect, request: pytest.FixtureRequest) -> Iterator[Worker]:
    version = str(request.param)
    cluster = realconnect.cluster(f"autorestart-{version}", version=version)
    [worker] = cluster.start_workers(1)
    yield worker
    cluster.stop()


@pytest.fixture
def connectors(worker: Worker, request: pytest.FixtureRequest) -> Iterator[Connectors]:
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    created = Connectors(worker.client, prefix)
    yield created
    created.cleanup()


def sidecar_posts(worker: Worker, connector: str) -> list[str]:
    """``"POST <path> <status>"`` for every POST the sidecar sent about ``connector``, in order."""
    posts = []
    for line in worker.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if SIDECAR_AGENT not in line:
            continue
        match = re.search(r'"POST (/connectors/([^/ ?]+)\S*) HTTP/[\d.]+" (\d{3})', line)
        if match and match.group(2) == connector:
            posts.append(f"POST {match.group(1)} {match.group(3)}")
    return posts


def test_off_nothing_is_sent_and_the_task_stays_failed(
    realconnect: RealConnect, worker: Worker, connectors: Connectors, tmp_path: Path
) -> None:
    name = f"autorestart-off-{worker.version}"
    probe = realconnect.probe(name, worker, {"WORKER_ID": worker.worker_id}).start()
    try:
        missing = tmp_path / "missing"
        name = connectors.create(file_sink(missing / "out.txt", "auto-restart-off"))
        worker.client.wait_for_state(name, "RUNNING", "FAILED", task_count=1)
        _, reason = probe.wait_reason(name, task=0, state="FAILED")
        assert "restart" not in str(reason["message"])
        missing.mkdir()
        # Twenty polls (POLL_INTERVAL 0.5): still FAILED, still not ready, no POST from us.
        probe.wait_answer(
            "/status", lambda a: a.body["poll"]["polls"] >= 20, what="20 polls", timeout=30
        )
        status = worker.client.status(name)
        assert status is not None
        assert status["tasks"][0]["state"] == "FAILED"
        assert probe.ready().code == 503
        assert probe.status().body["auto_restart"] == {"enabled": False}
    finally:
        probe.stop()
    assert sidecar_posts(worker, name) == []
    assert "auto-restart" not in probe.log_path.read_text(encoding="utf-8")


def test_on_the_failed_sink_task_comes_back_with_no_human_action(
    realconnect: RealConnect, worker: Worker, connectors: Connectors, tmp_path: Path
) -> None:
    settings = {"WORKER_ID": worker.worker_id, **AUTO_RESTART}
    probe = realconnect.probe(f"autorestart-on-{worker.version}", worker, settings).start()
    try:
        missing = tmp_path / "missing"
        name = connectors.create(file_sink(missing / "out.txt", "auto-restart-on"))
        # Attempt 1 goes out as soon as the FAILED task is seen, and fails again (no directory).
        probe.wait_answer(
            "/status",
            lambda a: any(
                c["name"] == name and c["attempts"] >= 1
                for c in a.body["auto_restart"]["connectors"]
            ),
            what=f"a first restart attempt of {name}",
            timeout=30,
        )
        # Readiness names the FAILED task and when the next attempt is.
        probe.wait_answer(
            "/ready",
            lambda a: (
                "restart attempt"
                in str((a.reason_for(name, task=0, state="FAILED") or {}).get("message"))
            ),
            what="a FAILED reason with the restart schedule",
            timeout=30,
        )

        missing.mkdir()  # the fix; nobody restarts anything by hand
        probe.wait_ready(True, timeout=40)
        status = worker.client.status(name)
        assert status is not None
        assert status["tasks"][0]["state"] == "RUNNING"
        assert probe.live().code == 200
    finally:
        probe.stop()

    encoded = f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true"
    posts = wait_until(
        lambda: sidecar_posts(worker, name) or None, timeout=5, what="the worker's request log"
    )
    # Only the KIP-745 restart of this connector, each accepted (202).
    assert all(post == f"POST {encoded} 202" for post in posts), posts
    log = probe.log_path.read_text(encoding="utf-8")
    assert f"restart attempt 1 of connector {name}" in log
