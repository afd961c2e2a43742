"""Properties of the verdict logic (hypothesis): pure functions of a ``PollState``, rules and time.

States are built directly (``Tracked`` with generated "since" times), so grace periods, unknown
states, MAX_UNHEALTHY, INCLUDE/EXCLUDE and both scopes all take part.
"""

import random
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.connect.models import ConnectorStatus, InstanceStatus, Snapshot, TaskStatus, WorkerHealth
from app.identity import explicit_identity
from app.liveness import evaluate_live
from app.pollstate import PollState
from app.readiness import evaluate_ready
from app.rules import Rules
from app.states import KNOWN_STATES
from app.tracking import StateTracker, Tracked
from app.verdict import Verdict

THIS = "10.0.0.1:8083"
OTHERS = ("10.0.0.2:8083", "connect-2.connect.svc:8083", "null:-1")
NOW = 10_000.0
STATES = (*sorted(KNOWN_STATES), "ZOMBIE")  # and one Connect does not have
EXCLUDED_PREFIX = "skip-"

names = st.text(alphabet="ab-/%é 7", min_size=1, max_size=8)
since = st.floats(min_value=NOW - 400, max_value=NOW)
workers = st.sampled_from((THIS, *OTHERS))
other_workers = st.sampled_from(OTHERS)


@dataclass(frozen=True)
class Obj:
    """A connector instance or task before it becomes a ``Tracked`` entry."""

    state: str
    worker: str
    since: float


@st.composite
def objects(draw: st.DrawFn, worker: st.SearchStrategy[str] = workers) -> Obj:
    return Obj(draw(st.sampled_from(STATES)), draw(worker), draw(since))


Cluster = dict[str, tuple[Obj, list[Obj]]]


def clusters(
    name: st.SearchStrategy[str] = names, worker: st.SearchStrategy[str] = workers
) -> st.SearchStrategy[Cluster]:
    return st.dictionaries(
        name, st.tuples(objects(worker), st.lists(objects(worker), max_size=4)), max_size=6
    )


def tracked(cluster: Cluster) -> dict[str, Tracked]:
    entries: dict[str, Tracked] = {}
    for name, (conn, tasks) in cluster.items():
        status = ConnectorStatus(
            connector=InstanceStatus(conn.state, conn.worker),
            tasks=tuple(TaskStatus(i, task.state, task.worker) for i, task in enumerate(tasks)),
        )
        entries[name] = Tracked(status, conn.since, tuple(task.since for task in tasks))
    return entries


def poll_state(entries: dict[str, Tracked], health: str = "healthy") -> PollState:
    kind: Any = health
    return PollState(
        started=0.0,
        generation=1,
        snapshot=Snapshot(connector_count=len(entries), health=WorkerHealth(kind, "")),
        tracked=entries,
        polls=1,
        last_attempt=NOW - 1,
        last_success=NOW - 1,
    )


rule_settings: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    scope=st.sampled_from(("worker", "cluster")),
    ready_states=st.sampled_from((("RUNNING",), ("RUNNING", "PAUSED"), ("RUNNING", "STOPPED"))),
    transient_grace=st.sampled_from((0.0, 60.0, 300.0)),
    max_unhealthy=st.sampled_from(("0", "1", "3", "10%", "50%", "100%")),
    live_fail_states=st.sampled_from(((), ("FAILED",))),
    live_grace=st.sampled_from((0.0, 60.0)),
    startup_grace=st.sampled_from((0.0, 300.0, 20_000.0)),
    exclude=st.just((EXCLUDED_PREFIX + "*",)),
)


def rules_for(values: dict[str, Any]) -> Rules:
    return Rules(explicit_identity(THIS), **values)


def ready(cluster: Cluster, values: dict[str, Any]) -> Verdict:
    return evaluate_ready(poll_state(tracked(cluster)), rules_for(values), NOW, 0.0)


def live(cluster: Cluster, values: dict[str, Any]) -> Verdict:
    return evaluate_live(poll_state(tracked(cluster)), rules_for(values), NOW, 0.0)


def essence(verdict: Verdict) -> tuple[object, ...]:
    return (verdict.ok, verdict.summary, verdict.reasons, verdict.omitted, verdict.counts)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    cluster=clusters(),
    values=rule_settings,
    name=names,
    tasks=st.integers(0, 4),
    when=since,
    into_existing=st.booleans(),
)
def test_adding_a_running_object_in_scope_never_turns_ready_into_not_ready(
    cluster: Cluster,
    values: dict[str, Any],
    name: str,
    tasks: int,
    when: float,
    into_existing: bool,
) -> None:
    before = ready(cluster, values)
    running = Obj("RUNNING", THIS, when)
    grown = dict(cluster)
    if into_existing and cluster:
        target = sorted(cluster)[0]
        conn, old_tasks = cluster[target]
        grown[target] = (conn, [*old_tasks, running])  # a new RUNNING task of a connector
    elif name not in cluster:
        grown[name] = (running, [running] * tasks)  # a new connector, RUNNING throughout
    after = ready(grown, values)
    if before.ok:
        assert after.ok, (before.summary, after.summary)
    if live(cluster, values).ok:
        assert live(grown, values).ok


@PROPERTY
@given(
    cluster=clusters(),
    values=rule_settings,
    others=clusters(worker=other_workers),
    new_states=st.lists(st.sampled_from(STATES), min_size=30, max_size=30),
)
def test_with_scope_worker_other_workers_objects_never_matter(
    cluster: Cluster,
    values: dict[str, Any],
    others: Cluster,
    new_states: list[str],
) -> None:
    values = {**values, "scope": "worker"}
    states = iter(new_states * 10)

    def flip(obj: Obj) -> Obj:  # another state (and since) for every object not on this worker
        return obj if obj.worker == THIS else replace(obj, state=next(states), since=NOW - 5)

    changed: Cluster = {
        name: (flip(conn), [flip(task) for task in tasks])
        for name, (conn, tasks) in cluster.items()
    }
    for name, entry in others.items():  # connectors living only on other workers come and go
        changed.setdefault(name, entry)
    for name, (conn, tasks) in cluster.items():
        if conn.worker != THIS and all(task.worker != THIS for task in tasks):
            changed.pop(name)
    assert essence(ready(changed, values)) == essence(ready(cluster, values))
    assert essence(live(changed, values)) == essence(live(cluster, values))


@PROPERTY
@given(cluster=clusters(), values=rule_settings, seed=st.integers(0, 2**32 - 1))
def test_order_of_connectors_and_tasks_never_matters(
    cluster: Cluster, values: dict[str, Any], seed: int
) -> None:
    rng = random.Random(seed)
    items = list(cluster.items())
    rng.shuffle(items)
    entries: dict[str, Tracked] = {}
    for name, entry in tracked(dict(items)).items():
        pairs = list(zip(entry.status.tasks, entry.task_since, strict=True))
        rng.shuffle(pairs)  # Connect lists tasks by id, but nothing should rely on it
        status = ConnectorStatus(entry.status.connector, tuple(task for task, _ in pairs))
        entries[name] = Tracked(status, entry.connector_since, tuple(when for _, when in pairs))
    rules = rules_for(values)
    shuffled = poll_state(entries)
    original = poll_state(tracked(cluster))
    assert evaluate_ready(shuffled, rules, NOW, 0.0) == evaluate_ready(original, rules, NOW, 0.0)
    assert evaluate_live(shuffled, rules, NOW, 0.0) == evaluate_live(original, rules, NOW, 0.0)


@PROPERTY
@given(
    cluster=clusters(),
    values=rule_settings,
    excluded=clusters(name=names.map(lambda name: EXCLUDED_PREFIX + name)),
)
def test_excluded_connectors_never_matter(
    cluster: Cluster, values: dict[str, Any], excluded: Cluster
) -> None:
    kept = {name: entry for name, entry in cluster.items() if not name.startswith(EXCLUDED_PREFIX)}
    assert essence(ready({**kept, **excluded}, values)) == essence(ready(kept, values))
    assert essence(live({**kept, **excluded}, values)) == essence(live(kept, values))


@PROPERTY
@given(values=rule_settings, health=st.sampled_from(("healthy", "unsupported")))
def test_an_empty_snapshot_is_ready(values: dict[str, Any], health: str) -> None:
    for entries in ({}, StateTracker().objects):
        verdict = evaluate_ready(poll_state(entries, health), rules_for(values), NOW, 0.0)
        assert verdict.ok, verdict.summary
        assert verdict.reasons == ()
        assert evaluate_live(poll_state(entries, health), rules_for(values), NOW, 0.0).ok


@PROPERTY
@given(cluster=clusters(), values=rule_settings)
def test_a_state_tracker_fed_the_same_poll_twice_changes_nothing(
    cluster: Cluster, values: dict[str, Any]
) -> None:
    """The tracker's "since" times are stable: the same answer later keeps the first times, so
    the verdict is that of a tracker that saw the answer once (graces are not re-armed)."""
    tracker = StateTracker()
    connectors = {name: entry.status for name, entry in tracked(cluster).items()}
    tracker.update(connectors, NOW - 100)
    assert tracker.update(connectors, NOW) == []
    for entry in tracker.objects.values():
        assert entry.connector_since == NOW - 100
        assert set(entry.task_since) <= {NOW - 100}
    once = StateTracker()
    once.update(connectors, NOW - 100)
    rules = rules_for(values)
    twice_verdict = evaluate_ready(poll_state(tracker.objects), rules, NOW, 0.0)
    assert twice_verdict == evaluate_ready(poll_state(once.objects), rules, NOW, 0.0)
