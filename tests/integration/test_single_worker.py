"""One real Connect worker, the sidecar as a process: connector and task states -> probes.

Every test runs on each Connect release of ``CONNECT_VERSIONS`` (newest 4.x, 3.9.x, 3.6.x). The
worker and the sidecars are shared by the module (one worker per release); each test creates its
own connectors and deletes them at the end, so every test starts from a ready worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.realconnect.artifacts import CONNECT_VERSIONS
from tools.realconnect.cluster import Worker
from tools.realconnect.configs import failing_source, file_sink, file_source
from tools.realconnect.probe import Probe
from tools.realconnect.rest import Connectors
from tools.realconnect.session import RealConnect

pytestmark = pytest.mark.realkafka


@pytest.fixture(scope="module", params=CONNECT_VERSIONS, ids=lambda v: f"connect-{v}")
def worker(realconnect: RealConnect, request: pytest.FixtureRequest) -> Iterator[Worker]:
    version = str(request.param)
    cluster = realconnect.cluster(f"single-{version}", version=version)
    [worker] = cluster.start_workers(1)
    realconnect.record(f"worker_start_seconds_{version}", worker.wait_healthy())
    assert worker.client.server_info()["version"] == version
    yield worker
    realconnect.record_rss(f"worker_{version}", worker.rss_kib())
    cluster.stop()


@pytest.fixture(scope="module")
def probe(realconnect: RealConnect, worker: Worker) -> Iterator[Probe]:
    """The sidecar as configured in a pod: this worker's id, worker scope."""
    name = f"single-{worker.version}"
    sidecar = realconnect.probe(name, worker, {"WORKER_ID": worker.worker_id}).start()
    yield sidecar
    if sidecar.proc is not None:
        realconnect.record_rss("sidecar", sidecar.proc.rss_kib())
    sidecar.stop()


@pytest.fixture(scope="module")
def auto_probe(realconnect: RealConnect, worker: Worker) -> Iterator[Probe]:
    """A sidecar without WORKER_ID: it must detect ``127.0.0.1:<port>`` itself."""
    sidecar = realconnect.probe(f"single-auto-{worker.version}", worker).start()
    yield sidecar
    sidecar.stop()


@pytest.fixture
def connectors(
    worker: Worker, probe: Probe, request: pytest.FixtureRequest
) -> Iterator[Connectors]:
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    created = Connectors(worker.client, prefix)
    probe.wait_ready(True, timeout=30)  # a clean start
    yield created
    created.cleanup()


def assert_live(*probes: Probe) -> None:
    for sidecar in probes:
        answer = sidecar.live()
        assert answer.code == 200, f"{sidecar.name} /live: {answer}"


def test_worker_without_connectors_is_ready_and_live(probe: Probe, worker: Worker) -> None:
    ready = probe.wait_ready(True)
    assert ready.body["probe"] == "ready"
    assert ready.body["ok"] is True
    assert ready.body["worker_id"] == worker.worker_id
    assert ready.body["scope"] == "worker"
    assert_live(probe)
    status = probe.status()
    assert status.code == 200
    assert worker.worker_id in json.dumps(status.body)


def test_source_running_then_paused_then_resumed(
    probe: Probe, worker: Worker, connectors: Connectors, tmp_path: Path
) -> None:
    source = tmp_path / "input.txt"
    source.write_text("one\ntwo\n")
    name = connectors.create(file_source(source, "lines-pause"))
    worker.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=1)
    probe.wait_ready(True)

    worker.client.pause(name)
    worker.client.wait_for_state(name, "PAUSED", "PAUSED")
    probe.wait_reason(name, state="PAUSED")
    paused, _ = probe.wait_reason(name, task=0, state="PAUSED")
    assert set(paused.codes) <= {"connector_state", "task_state"}, paused
    assert_live(probe)

    worker.client.resume(name)
    worker.client.wait_for_state(name, "RUNNING", "RUNNING")
    probe.wait_ready(True)
    assert_live(probe)


def test_sink_task_failed_then_fixed_and_restarted(
    probe: Probe,
    auto_probe: Probe,
    worker: Worker,
    connectors: Connectors,
    tmp_path: Path,
) -> None:
    missing_dir = tmp_path / "missing"
    name = connectors.create(file_sink(missing_dir / "out.txt", "lines-sink"))
    worker.client.wait_for_state(name, "RUNNING", "FAILED", task_count=1)

    _, reason = probe.wait_reason(name, task=0, state="FAILED")
    assert reason["code"] == "task_state"
    assert reason["worker_id"] == worker.worker_id
    assert name in str(reason["message"])
    assert "Couldn't find or create file" in str(reason.get("trace")), reason
    assert_live(probe)
    assert name in json.dumps(probe.status().body)
    # Without WORKER_ID the sidecar recognises 127.0.0.1:<port> as its worker too.
    auto_probe.wait_reason(name, task=0, state="FAILED")
    assert_live(auto_probe)

    missing_dir.mkdir()
    worker.client.restart(name, include_tasks=True, only_failed=True)
    worker.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=1)
    probe.wait_ready(True)
    auto_probe.wait_ready(True)


def test_stopped_connector_is_not_ready_and_deleted_is_ready(
    probe: Probe, worker: Worker, connectors: Connectors, tmp_path: Path
) -> None:
    name = connectors.create(file_source(tmp_path / "input.txt", "lines-stop"))
    worker.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=1)
    probe.wait_ready(True)

    worker.client.stop(name)
    worker.client.wait_for_state(name, "STOPPED", task_count=0)
    probe.wait_reason(name, state="STOPPED")
    assert_live(probe)

    worker.client.delete(name)
    worker.client.wait_gone(name)
    probe.wait_ready(True)
    assert name not in json.dumps(probe.ready().body)


def test_connector_level_failure(probe: Probe, worker: Worker, connectors: Connectors) -> None:
    name = connectors.create(failing_source(fail_connector=True))
    worker.client.wait_for_state(name, "FAILED")

    _, reason = probe.wait_reason(name, state="FAILED")
    assert reason["code"] == "connector_state"
    assert "fail.connector=true" in str(reason.get("trace")), reason
    assert_live(probe)

    worker.client.delete(name)
    worker.client.wait_gone(name)
    probe.wait_ready(True)


def test_every_failed_task_is_named(probe: Probe, worker: Worker, connectors: Connectors) -> None:
    name = connectors.create(failing_source(tasks=2, fail_task=True))
    worker.client.wait_for_state(name, "RUNNING", "FAILED", task_count=2)

    probe.wait_answer(
        "/ready",
        lambda a: a.code == 503 and all(a.reason_for(name, task=t, state="FAILED") for t in (0, 1)),
        what="503 naming both FAILED tasks",
    )
    assert_live(probe)
