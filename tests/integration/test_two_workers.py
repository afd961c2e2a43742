"""Two real Connect workers in one group: whose failures count (scope), and a worker leaving.

Worker A is started first, so it leads the group (the broker keeps a rejoining leader); sidecars
watch A with ``scope=worker`` and ``scope=cluster`` and B with ``scope=worker``. The last test
stops worker B for good, so it runs last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tools.realconnect.cluster import ConnectCluster, Worker
from tools.realconnect.configs import failing_source
from tools.realconnect.probe import Probe
from tools.realconnect.rest import Connectors
from tools.realconnect.session import RealConnect
from tools.realconnect.wait import wait_until

pytestmark = pytest.mark.realkafka

# B's work is reassigned this long after B leaves: long enough to watch TRANSIENT_GRACE expire.
REBALANCE_DELAY_MS = 20_000
TRANSIENT_GRACE = 6.0


@dataclass
class Two:
    cluster: ConnectCluster
    a: Worker
    b: Worker
    a_worker: Probe  # on A, scope=worker
    a_cluster: Probe  # on A, scope=cluster
    b_worker: Probe  # on B, scope=worker

    @property
    def probes(self) -> tuple[Probe, Probe, Probe]:
        return self.a_worker, self.a_cluster, self.b_worker


@pytest.fixture(scope="module")
def two(realconnect: RealConnect) -> Iterator[Two]:
    cluster = realconnect.cluster("two", rebalance_delay_ms=REBALANCE_DELAY_MS)
    a, b = cluster.start_workers(2)
    grace = {"TRANSIENT_GRACE": str(TRANSIENT_GRACE)}
    probes = (
        realconnect.probe("two-a-worker", a, {"WORKER_ID": a.worker_id, **grace}),
        realconnect.probe(
            "two-a-cluster", a, {"WORKER_ID": a.worker_id, "SCOPE": "cluster", **grace}
        ),
        realconnect.probe("two-b-worker", b, {"WORKER_ID": b.worker_id, **grace}),
    )
    try:
        for sidecar in probes:
            sidecar.start()
        yield Two(cluster, a, b, *probes)
    finally:
        for sidecar in probes:
            sidecar.stop()
        cluster.stop()


@pytest.fixture
def connectors(two: Two) -> Iterator[Connectors]:
    created = Connectors(two.a.client, "two")
    yield created
    if two.a.alive:
        created.cleanup()


Obj = tuple[str, int | None, str, str]


def objects(status: dict[str, Any]) -> list[Obj]:
    """(connector, task or None, state, worker_id) of a connector status."""
    name = status["name"]
    found: list[Obj] = [
        (name, None, status["connector"]["state"], status["connector"]["worker_id"])
    ]
    found += [(name, t["id"], t["state"], t["worker_id"]) for t in status["tasks"]]
    return found


def test_failed_task_on_the_other_worker_counts_only_with_cluster_scope(
    two: Two, connectors: Connectors
) -> None:
    for sidecar in two.probes:
        sidecar.wait_ready(True, timeout=30)
    name = connectors.create(failing_source(tasks=4, fail_task_on_worker=two.b.worker_id))

    def settled() -> dict[str, Any] | None:
        status = two.a.client.status(name)
        if status is None or len(status["tasks"]) != 4:
            return None
        expected = {two.a.worker_id: "RUNNING", two.b.worker_id: "FAILED"}
        tasks_ok = all(expected.get(t["worker_id"]) == t["state"] for t in status["tasks"])
        return status if tasks_ok else None

    status = wait_until(settled, timeout=30, what="tasks RUNNING on A and FAILED on B")
    on_b = [t["id"] for t in status["tasks"] if t["worker_id"] == two.b.worker_id]
    on_a = [t["id"] for t in status["tasks"] if t["worker_id"] == two.a.worker_id]
    assert on_a, f"precondition: Connect put no task on worker A: {status}"
    assert on_b, f"precondition: Connect put no task on worker B: {status}"

    # B's own sidecar and A's cluster-scope sidecar name every FAILED task on B ...
    for sidecar in (two.b_worker, two.a_cluster):
        answer = sidecar.wait_answer(
            "/ready",
            lambda a: (
                a.code == 503 and all(a.reason_for(name, task=t, state="FAILED") for t in on_b)
            ),
            what=f"503 naming tasks {on_b} FAILED",
        )
        assert all(a.reason_for(name, task=t) is None for t in on_a for a in (answer,)), (
            f"tasks on A are RUNNING, not reasons: {answer}"
        )
        assert {r["worker_id"] for r in answer.reasons} == {two.b.worker_id}, answer
    # ... while A's worker-scope sidecar, which has seen the same failures, stays ready.
    two.a_worker.wait_answer(
        "/status", lambda a: "FAILED" in str(a.body), what="the FAILED tasks in /status"
    )
    ready = two.a_worker.ready()
    assert ready.code == 200, ready
    for sidecar in two.probes:
        assert sidecar.live().code == 200

    two.a.client.delete(name)
    two.a.client.wait_gone(name)
    for sidecar in two.probes:
        sidecar.wait_ready(True)


def test_stopped_worker_objects_unassigned_tolerated_within_transient_grace(
    two: Two, connectors: Connectors
) -> None:
    # Work on both workers: create connectors until B runs at least one connector instance
    # (connector records turn UNASSIGNED when B stops; RUNNING task records of the current
    # generation may stay RUNNING, see KAFKA-12525's stale-UNASSIGNED guard).
    def b_has_a_connector() -> bool:
        statuses = two.a.client.statuses()
        running = all(
            state == "RUNNING" for s in statuses.values() for (_, _, state, _) in objects(s)
        )
        on_b = any(s["connector"]["worker_id"] == two.b.worker_id for s in statuses.values())
        return running and on_b and len(statuses) == len(connectors.created)

    for _ in range(4):
        name = connectors.create(failing_source(tasks=2))
        two.a.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=2)
        try:
            wait_until(b_has_a_connector, timeout=10, what="a connector running on B")
            break
        except AssertionError:
            continue
    else:
        pytest.fail(f"precondition: no connector instance landed on B: {two.a.client.statuses()}")
    for sidecar in two.probes:
        sidecar.wait_ready(True)

    stopper = threading.Thread(target=two.b.stop, name="stop-worker-b")
    stopper.start()
    try:

        def unassigned_on_b() -> list[Obj]:
            return [
                obj
                for s in two.a.client.statuses().values()
                for obj in objects(s)
                if obj[2] == "UNASSIGNED" and obj[3] == two.b.worker_id
            ]

        seen = wait_until(unassigned_on_b, timeout=30, what="B's objects UNASSIGNED")
        first_unassigned = time.monotonic()
        # Within TRANSIENT_GRACE the cluster-scope sidecar still says ready, counting them pending.
        tolerated = two.a_cluster.wait_answer(
            "/ready",
            lambda a: a.code == 200 and "transient" in str(a.body.get("summary")),
            what="200 with objects pending in a transient state",
            timeout=TRANSIENT_GRACE - 2,
        )
        assert time.monotonic() - first_unassigned < TRANSIENT_GRACE, tolerated
        # After it they count: not ready, naming an UNASSIGNED object of B.
        expired = two.a_cluster.wait_answer(
            "/ready",
            lambda a: (
                a.code == 503
                and any(
                    r.get("state") == "UNASSIGNED" and r.get("worker_id") == two.b.worker_id
                    for r in a.reasons
                )
            ),
            what="503 naming UNASSIGNED objects of B",
            timeout=TRANSIENT_GRACE + 10,
        )
        waited = time.monotonic() - first_unassigned
        assert waited >= TRANSIENT_GRACE - 1.5, f"counted after {waited:.1f}s only: {expired}"
        assert seen
    finally:
        stopper.join()

    # A's own objects are fine: its worker-scope sidecar never minded B leaving.
    assert two.a_worker.ready().code == 200
    assert two.a_worker.live().code == 200
    assert two.a_cluster.live().code == 200
    # B's sidecar: its worker is gone (connection refused): not ready, still live (startup grace).
    gone = two.b_worker.wait_answer(
        "/ready", lambda a: "connect_unreachable" in a.codes, what="connect_unreachable"
    )
    assert gone.code == 503
    assert two.b_worker.live().code == 200
    # After scheduled.rebalance.max.delay.ms, A takes B's work over and everything is ready again.
    two.a_cluster.wait_ready(True, timeout=REBALANCE_DELAY_MS / 1000 + 20)
    statuses = two.a.client.statuses()
    assert {obj[3] for s in statuses.values() for obj in objects(s)} == {two.a.worker_id}
