"""Losing Kafka on a real broker: what the sidecar answers while it is gone, and after it is back.

A broker of its own (so the rest of the session keeps its Kafka), and on it two Connect groups: the
newest 4.x (``/health``) and 3.6.x (no ``/health``), each with one worker running a FileStream
source, a FileStream sink and an idle test source, each watched by a sidecar with production-like
``TIMEOUT`` (11 s, so ``/health``'s own 10 s budget can answer) and a short ``LIVE_GRACE``.

Measured on real workers (README, "Losing Kafka"): the worker keeps answering
``GET /connectors?expand=status`` in milliseconds with its cached RUNNING states; within about
10 s its herder thread blocks on Kafka and ``/health`` (3.9+) answers 500 after its 10 s budget,
naming a stage that waits on Kafka. So on 4.x ``/ready`` goes 503 ``kafka_unreachable``; ``/live``
stays 200 (Kafka down is down for every worker: failing liveness would restart the whole cluster
for nothing). On 3.6 nothing the sidecar reads changes: it stays ready; this test pins that
evidence. When the broker is back the same worker process recovers by itself; its objects are
UNASSIGNED until ``scheduled.rebalance.max.delay.ms`` (10 s here, 5 min by default) passes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.realconnect.artifacts import DEFAULT_CONNECT
from tools.realconnect.cluster import Broker, ConnectCluster, Worker, start_broker
from tools.realconnect.configs import failing_source, file_sink, file_source
from tools.realconnect.probe import Probe
from tools.realconnect.session import RealConnect
from tools.realconnect.wait import GiveUp, wait_until

pytestmark = pytest.mark.realkafka

OLD = "3.6.2"
# Far shorter than the outage: /live must stay 200 although it is long over.
LIVE_GRACE = 10.0
REBALANCE_DELAY_MS = 10_000
SETTINGS = {
    "STARTUP_GRACE": "0",
    "LIVE_GRACE": str(LIVE_GRACE),
    "TIMEOUT": "11",
    "MAX_AGE": "40",
    "TRANSIENT_GRACE": "5",
}
# How long the outage lasts: long enough for the 4.x worker's herder to block and /health to say so.
DOWN_SECONDS = 45.0
# Back means: the sidecar ready and every object RUNNING, without a break for this long.
STABLE_SECONDS = 12.0


@dataclass
class Watched:
    cluster: ConnectCluster
    worker: Worker
    probe: Probe


@dataclass
class Lab:
    broker: Broker
    new: Watched  # newest 4.x: /health
    old: Watched  # 3.6.x: no /health


def _watched(realconnect: RealConnect, broker: Broker, version: str, data: Path) -> Watched:
    cluster = realconnect.cluster(
        f"lost-{version}", version=version, broker=broker, rebalance_delay_ms=REBALANCE_DELAY_MS
    )
    [worker] = cluster.start_workers(1)
    source = data / f"lost-{version}.txt"
    source.write_text("one\ntwo\n")
    worker.client.create("source", file_source(source, f"lost-{version}"))
    worker.client.create("sink", file_sink(data / f"lost-{version}.out", f"lost-{version}"))
    worker.client.create("idle", failing_source())
    for name in ("source", "sink", "idle"):
        worker.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=1, timeout=60)
    settings = {"WORKER_ID": worker.worker_id, **SETTINGS}
    probe = realconnect.probe(f"lost-{version}", worker, settings).start()
    probe.wait_ready(True, timeout=30)
    return Watched(cluster, worker, probe)


@pytest.fixture(scope="module")
def lab(realconnect: RealConnect) -> Iterator[Lab]:
    broker = start_broker(realconnect.artifacts, realconnect.run, name="broker-lost")
    watched: list[Watched] = []
    try:
        data = realconnect.run.sub("lost-data")
        watched.append(_watched(realconnect, broker, DEFAULT_CONNECT, data))
        watched.append(_watched(realconnect, broker, OLD, data))
        yield Lab(broker, *watched)
    finally:
        for item in watched:
            item.probe.stop()
            item.cluster.stop(timeout=10)
        broker.stop()


def _everything_running(worker: Worker) -> bool:
    statuses = worker.client.statuses()
    states = [s["connector"]["state"] for s in statuses.values()]
    states += [t["state"] for s in statuses.values() for t in s["tasks"]]
    return len(statuses) == 3 and all(state == "RUNNING" for state in states)


def _wait_recovered(item: Watched, timeout: float) -> float:
    """Waits until the sidecar says ready and the worker reports everything RUNNING, without a
    break for ``STABLE_SECONDS`` (right after Kafka returns the worker still shows its stale
    RUNNING states for a moment, then UNASSIGNED); returns when that stable stretch began.
    ``/live`` must stay 200 all along."""
    since: list[float] = []

    def stable() -> float | None:
        live = item.probe.live()
        if live.code != 200:
            raise GiveUp(f"{item.probe.name} /live {live} after Kafka came back")
        now = time.monotonic()
        if item.probe.ready().code == 200 and _everything_running(item.worker):
            since[:] = since or [now]
            return since[0] if now - since[0] >= STABLE_SECONDS else None
        since.clear()
        return None

    return wait_until(stable, timeout=timeout, interval=0.5, what=f"{item.probe.name} back")


def _pid(worker: Worker) -> int | None:
    return worker.proc.pid if worker.proc is not None else None


def _lose_kafka(realconnect: RealConnect, lab: Lab, variant: str) -> None:
    """Stops the broker (``freeze``: SIGSTOP, ``kill``: SIGKILL), watches both sidecars for
    ``DOWN_SECONDS``, brings it back (SIGCONT, or a restart on the same ports and data) and
    waits until both sidecars are ready again — the same worker processes, never restarted."""
    for item in (lab.new, lab.old):
        item.probe.wait_ready(True, timeout=60)
        assert item.worker.alive
    pids = [_pid(lab.new.worker), _pid(lab.old.worker)]

    lost = time.monotonic()
    if variant == "freeze":
        lab.broker.freeze()
    else:
        lab.broker.kill()
    detected: float | None = None
    old_ready_codes: set[int] = set()
    while time.monotonic() - lost < DOWN_SECONDS:
        ready = lab.new.probe.ready()
        if detected is None and "kafka_unreachable" in ready.codes:
            detected = time.monotonic() - lost
            reason = ready.reasons[0]
            assert ready.code == 503, ready
            assert "waiting on Kafka" in str(reason["message"]), reason
        for item in (lab.new, lab.old):  # Kafka down for everyone: never restart the workers
            live = item.probe.live()
            assert live.code == 200, f"{item.probe.name} /live {live} ({variant})"
        old_ready_codes.add(lab.old.probe.ready().code)
        time.sleep(0.5)
    assert detected is not None, (
        f"4.x sidecar never said kafka_unreachable: {lab.new.probe.ready()}"
    )
    realconnect.record(f"kafka_lost_{variant}_detected_seconds", detected)
    # 3.6: the worker still answers RUNNING for everything and has no /health: no REST signal.
    assert old_ready_codes == {200}, old_ready_codes
    assert _everything_running(lab.old.worker)
    assert lab.old.probe.status().body["connect"]["health"]["status"] == "unsupported"
    # 4.x: the same cached RUNNING states, only /health tells.
    assert _everything_running(lab.new.worker)

    back = time.monotonic()
    if variant == "freeze":
        lab.broker.thaw()
    else:
        lab.broker.start()
    lab.new.probe.wait_answer(
        "/ready",
        lambda a: "kafka_unreachable" not in a.codes,
        what="kafka_unreachable gone",
        timeout=60,
    )
    realconnect.record(f"kafka_back_{variant}_cleared_seconds", time.monotonic() - back)
    for item in (lab.new, lab.old):
        recovered = _wait_recovered(item, timeout=REBALANCE_DELAY_MS / 1000 + 90)
        realconnect.record(
            f"kafka_back_{variant}_ready_seconds_{item.worker.version}", recovered - back
        )
    assert [_pid(lab.new.worker), _pid(lab.old.worker)] == pids  # recovered, not restarted
    assert lab.new.worker.alive
    assert lab.old.worker.alive


def test_broker_frozen_then_resumed(realconnect: RealConnect, lab: Lab) -> None:
    _lose_kafka(realconnect, lab, "freeze")


def test_broker_killed_then_restarted(realconnect: RealConnect, lab: Lab) -> None:
    _lose_kafka(realconnect, lab, "kill")
