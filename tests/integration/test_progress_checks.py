"""Progress checks (issue 14) on the real broker and two real newest-4.x workers.

One Connect group of two workers, one sidecar on each reading Kafka over SASL_SSL with
SCRAM-SHA-512 (the broker's second listener, self-signed certificate). The test sink
(``tools/testplugins/sink``) blocks in ``put()`` while a file exists, or never commits. Records
are produced with confluent-kafka. Short settings: a read every 2 s, a 15 s stall window, a 4 s
not-consuming grace, the blocked consumer's ``max.poll.interval.ms`` 8 s. Each test deletes its
connectors, so the next starts from a ready pair.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tools.realconnect.cluster import ConnectCluster, Worker
from tools.realconnect.probe import Answer, Probe
from tools.realconnect.rest import Connectors
from tools.realconnect.session import RealConnect
from tools.realconnect.wait import wait_until

pytestmark = pytest.mark.realkafka

SINK = "io.github.kafkaconnectprobe.testplugins.ControllableSinkConnector"
INTERVAL = 2.0
STALL_WINDOW = 15.0
GRACE = 4.0
MAX_POLL_MS = 8_000
PROGRESS = {
    "PROGRESS_INTERVAL": str(INTERVAL),
    "STALL_WINDOW": str(STALL_WINDOW),
    "NOT_CONSUMING_GRACE": str(GRACE),
    "STALL_WINDOWS": "*-late=3600",
    "PROGRESS_EXCLUDE": "*-excluded",
}


@dataclass
class Pair:
    realconnect: RealConnect
    cluster: ConnectCluster
    workers: tuple[Worker, Worker]
    sidecars: dict[str, Probe]  # by worker id
    tmp: Path

    def owner(self, connector: str, task: int = 0) -> str:
        """The worker id running ``connector``'s task (once it is RUNNING)."""

        def found() -> str | None:
            status = self.workers[0].client.status(connector)
            for entry in (status or {}).get("tasks", []):
                if entry["id"] == task and entry["state"] == "RUNNING":
                    return str(entry["worker_id"])
            return None

        return wait_until(found, timeout=60, what=f"{connector} task {task} RUNNING")

    def other(self, worker_id: str) -> Probe:
        return next(p for wid, p in self.sidecars.items() if wid != worker_id)


def kafka_settings(realconnect: RealConnect) -> dict[str, str]:
    scram = realconnect.broker.scram
    assert scram is not None, "the session broker has a SASL_SSL listener"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": scram.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_USERNAME": scram.username,
        "KAFKA_PASSWORD_FILE": str(scram.password_file),
        "KAFKA_CA_FILE": str(scram.ca_file),
    }


@pytest.fixture(scope="module")
def pair(realconnect: RealConnect, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    cluster = realconnect.cluster("progress")
    sidecars: list[Probe] = []
    try:
        a, b = cluster.start_workers(2)
        for worker in (a, b):
            sidecar = realconnect.probe(
                f"progress-{worker.port}",
                worker,
                {"WORKER_ID": worker.worker_id, **PROGRESS, **kafka_settings(realconnect)},
            )
            sidecars.append(sidecar)
            sidecar.start()
        yield Pair(
            realconnect,
            cluster,
            (a, b),
            {w.worker_id: s for w, s in zip((a, b), sidecars, strict=True)},
            tmp_path_factory.mktemp("progress"),
        )
    finally:
        for sidecar in sidecars:
            sidecar.stop()
        cluster.stop()


@pytest.fixture
def connectors(pair: Pair) -> Iterator[Connectors]:
    created = Connectors(pair.workers[0].client, "progress")
    for sidecar in pair.sidecars.values():
        sidecar.wait_ready(True, timeout=60)
    yield created
    created.cleanup()


def topic(realconnect: RealConnect, records: int, partitions: int = 2) -> str:
    """A new topic with ``records`` records spread over its partitions."""
    name = f"progress-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": realconnect.broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    produce(realconnect, name, records)
    return name


def produce(realconnect: RealConnect, name: str, records: int) -> None:
    if records:
        producer = Producer({"bootstrap.servers": realconnect.broker.bootstrap, "linger.ms": 5})
        for i in range(records):
            producer.produce(name, key=str(i).encode(), value=b'{"n": %d}' % i)
        assert producer.flush(30) == 0


def sink(topic_name: str, **extra: str) -> dict[str, str]:
    return {"connector.class": SINK, "tasks.max": "1", "topics": topic_name, **extra}


def task_progress(sidecar: Probe, connector: str, task: int = 0) -> dict[str, Any] | None:
    for entry in sidecar.status().body.get("progress", {}).get("tasks", []):
        if entry["connector"] == connector and entry["task"] == task:
            return dict(entry)
    return None


def wait_progress(
    sidecar: Probe, connector: str, states: set[str], timeout: float
) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        entry = task_progress(sidecar, connector)
        return entry if entry is not None and entry["state"] in states else None

    return wait_until(
        read,
        timeout=timeout,
        what=f"{connector} progress in {states}",
        describe=lambda: f"progress {task_progress(sidecar, connector)}",
    )


def watch_ready(sidecars: list[Probe], seconds: float) -> list[Answer]:
    """Every answer that was not 200 during ``seconds``."""
    bad: list[Answer] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bad += [a for a in (s.ready() for s in sidecars) if not a.ok]
        time.sleep(0.5)
    return bad


def test_backlog_drains_and_idle_sink_stay_ready(pair: Pair, connectors: Connectors) -> None:
    rc = pair.realconnect
    draining = connectors.create(sink(topic(rc, 5_000)), "drain")
    idle = connectors.create(sink(topic(rc, 0)), "idle")
    owners = {name: pair.sidecars[pair.owner(name)] for name in (draining, idle)}
    bad = watch_ready(list(pair.sidecars.values()), STALL_WINDOW + 3 * INTERVAL)
    assert not bad, bad[:3]
    for name, sidecar in owners.items():
        entry = wait_progress(sidecar, name, {"idle", "ok"}, timeout=10)
        assert entry["lag"] == 0
        assert entry["group"] == f"connect-{name}"
    status = owners[draining].status().body["progress"]
    assert status["kafka"]["up"] is True
    assert status["kafka"]["security_protocol"] == "SASL_SSL"


def test_blocked_put_is_not_consuming_on_its_worker_only(
    pair: Pair, connectors: Connectors
) -> None:
    rc = pair.realconnect
    block = pair.tmp / "block-put"
    block.touch()
    records = topic(rc, 0)
    name = connectors.create(
        sink(
            records,
            **{
                "block.file": str(block),
                "consumer.override.max.poll.interval.ms": str(MAX_POLL_MS),
            },
        ),
        "blocked",
    )
    owner_id = pair.owner(name)
    owner, other = pair.sidecars[owner_id], pair.other(owner_id)
    wait_progress(owner, name, {"idle", "ok"}, timeout=30)
    produce(rc, records, 50)  # the next poll hands them to put(), which blocks
    blocked_at = time.monotonic()
    _answer, reason = owner.wait_reason(
        name, task=0, state="RUNNING", timeout=MAX_POLL_MS / 1000 + 40
    )
    detected = time.monotonic() - blocked_at
    assert reason["code"] == "task_not_consuming"
    assert reason["worker_id"] == owner_id
    assert other.ready().ok, "only the stuck task's worker is NotReady"
    rc.record("progress_not_consuming_detect_s", detected)
    block.unlink()
    unblocked_at = time.monotonic()
    owner.wait_ready(True, timeout=30 + MAX_POLL_MS / 1000)
    rc.record("progress_not_consuming_recover_s", time.monotonic() - unblocked_at)


def test_never_committing_sink_stalls_unless_its_window_is_longer_or_excluded(
    pair: Pair, connectors: Connectors
) -> None:
    rc = pair.realconnect
    names = {
        kind: connectors.create(sink(topic(rc, 300), commit="false"), kind)
        for kind in ("stuck", "late", "excluded")
    }
    owner_id = pair.owner(names["stuck"])
    owner = pair.sidecars[owner_id]
    started = time.monotonic()
    _answer, reason = owner.wait_reason(
        names["stuck"], task=0, state="RUNNING", timeout=STALL_WINDOW + 40
    )
    rc.record("progress_stalled_detect_s", time.monotonic() - started)
    assert reason["code"] == "task_stalled"
    assert "300 records waiting" in reason["message"]
    assert pair.other(owner_id).ready().reason_for(names["stuck"], task=0) is None
    # Its window is 3600 s (STALL_WINDOWS), or it is not judged (PROGRESS_EXCLUDE): no flag.
    time.sleep(2 * INTERVAL)
    for sidecar in pair.sidecars.values():
        ready = sidecar.ready()
        for kind in ("late", "excluded"):
            assert ready.reason_for(names[kind], task=0) is None, ready
    late_owner = pair.sidecars[pair.owner(names["late"])]
    late = wait_progress(late_owner, names["late"], {"ok", "unknown", "behind"}, timeout=10)
    assert late["stall_window_seconds"] == 3600
    assert late["lag"] == 300
    excluded_owner = pair.sidecars[pair.owner(names["excluded"])]
    assert task_progress(excluded_owner, names["excluded"]) is None


def test_auto_restart_stalled_brings_progress_back(pair: Pair, connectors: Connectors) -> None:
    """A third sidecar with AUTO_RESTART_STALLED restarts the blocked task; the sink's
    ``unblock.on.restart`` makes the restart the cure, and the task commits again."""
    rc = pair.realconnect
    block = pair.tmp / "block-heal"
    block.touch()
    records = topic(rc, 0)
    name = connectors.create(
        sink(
            records,
            **{
                "block.file": str(block),
                "unblock.on.restart": "true",
                "consumer.override.max.poll.interval.ms": str(MAX_POLL_MS),
            },
        ),
        "heal",
    )
    owner_id = pair.owner(name)
    worker = next(w for w in pair.workers if w.worker_id == owner_id)
    healer = rc.probe(
        "progress-healer",
        worker,
        {
            "WORKER_ID": owner_id,
            **PROGRESS,
            **kafka_settings(rc),
            "AUTO_RESTART_STALLED": "true",
            "AUTO_RESTART_BACKOFF_UNIT": "1",
        },
    )
    healer.start()
    try:
        wait_progress(healer, name, {"idle", "ok"}, timeout=30)
        produce(rc, records, 40)
        started = time.monotonic()
        # Flagged, restarted (the file goes), then committed to the end: idle and ready.
        wait_until(lambda: not block.exists(), timeout=MAX_POLL_MS / 1000 + 60, what="a restart")
        rc.record("progress_auto_restart_s", time.monotonic() - started)
        entry = wait_progress(healer, name, {"idle"}, timeout=40)
        assert entry["lag"] == 0
        healer.wait_ready(True, timeout=20)
        metrics = healer._http.get("/metrics").text
        restarted = re.search(
            rf'^connect_probe_stall_restarts_total{{connector="{name}",result="restarted"}} '
            r"([0-9.]+)$",
            metrics,
            re.MULTILINE,
        )
        assert restarted is not None, metrics
        assert float(restarted.group(1)) >= 1
    finally:
        healer.stop()


def test_password_never_shown(pair: Pair) -> None:
    """The SCRAM password is in no sidecar body, metric or log (it is in the password file only)."""
    scram = pair.realconnect.broker.scram
    assert scram is not None
    for sidecar in pair.sidecars.values():
        bodies = [sidecar.get(path) for path in ("/ready", "/live", "/status")]
        assert all(scram.password not in str(b.body) for b in bodies)
        metrics = sidecar._http.get("/metrics").text
        assert "connect_probe_kafka_up 1.0" in metrics
        assert scram.password not in metrics
        assert scram.password not in sidecar.log_path.read_text()
    assert scram.password not in pair.realconnect.broker.log_path.read_text()
