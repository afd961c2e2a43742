"""Readiness and liveness as pure functions of the poll state, the rules and the time. No I/O.

Readiness = this worker can do its job now. Liveness = restarting the Connect container would help.
The README's table explains each rule; the tests in ``tests/test_rules.py`` pin them down.
"""

import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.decoding import first_line
from app.identity import Identity
from app.models import MalformedStatus
from app.pollstate import PollState
from app.selection import ConnectorSelector
from app.settings import MaxUnhealthy, Settings
from app.states import FAILED, KNOWN_STATES
from app.tracking import Tracked

# How many object reasons a verdict keeps in detail; the rest are counted.
DETAILED_REASONS = 50


@dataclass(frozen=True, slots=True)
class Reason:
    """One thing wrong (or pending), with enough detail for the human running curl."""

    code: str
    message: str
    connector: str | None = None
    task: int | None = None
    state: str | None = None
    worker_id: str | None = None
    since: str | None = None
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A probe's answer. ``valid_until``: monotonic time before which only a new poll changes it."""

    probe: str
    ok: bool
    summary: str
    reasons: tuple[Reason, ...] = ()
    omitted: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    valid_until: float = math.inf


@dataclass(frozen=True, slots=True)
class ObjectView:
    """A connector instance or task, flattened for judging and for /status."""

    connector: str
    task: int | None
    state: str
    worker_id: str
    since: float
    trace: str | None


class Rules:
    """The settings that shape verdicts, pre-computed once."""

    def __init__(self, settings: Settings, identity: Identity) -> None:
        self.identity = identity
        self.scope = settings.scope
        self.selector = ConnectorSelector(settings.include, settings.exclude)
        self.ready_states = frozenset(settings.ready_states)
        self.transient_states = settings.transient_states()
        self.live_fail_states = frozenset(settings.live_fail_states)
        self.transient_grace = settings.transient_grace
        self.live_grace = settings.live_grace
        self.startup_grace = settings.startup_grace
        self.max_age = settings.max_age
        self.max_unhealthy: MaxUnhealthy = settings.max_unhealthy
        self.required = tuple(settings.required_connectors)
        self._scope_memo: dict[str, bool] = {}

    def in_scope(self, worker_id: str) -> bool:
        """Cluster scope judges everything; worker scope only this worker's objects."""
        if self.scope == "cluster":
            return True
        answer = self._scope_memo.get(worker_id)
        if answer is None:
            answer = self.identity.matches(worker_id)
            if len(self._scope_memo) > 10_000:
                self._scope_memo.clear()
            self._scope_memo[worker_id] = answer
        return answer

    def census(self, tracked: Mapping[str, Tracked]) -> tuple[dict[str, int], list[ObjectView]]:
        """Objects in scope counted by state, and those not in a ready state.

        The hot loop of a poll at 10,000 connectors: nothing is allocated for ready objects.
        """
        everyone = self.scope == "cluster"
        memo = self._scope_memo
        in_scope = self.in_scope
        selected = self.selector.selected
        ready = self.ready_states
        by_state: dict[str, int] = {}
        others: list[ObjectView] = []
        for name, entry in tracked.items():
            if not selected(name):
                continue
            status = entry.status
            conn = status.connector
            worker = conn.worker_id
            if everyone or (memo[worker] if worker in memo else in_scope(worker)):
                by_state[conn.state] = by_state.get(conn.state, 0) + 1
                if conn.state not in ready:
                    others.append(
                        ObjectView(
                            name, None, conn.state, worker, entry.connector_since, conn.trace
                        )
                    )
            for task, since in zip(status.tasks, entry.task_since, strict=True):
                worker = task.worker_id
                if everyone or (memo[worker] if worker in memo else in_scope(worker)):
                    by_state[task.state] = by_state.get(task.state, 0) + 1
                    if task.state not in ready:
                        others.append(
                            ObjectView(name, task.id, task.state, worker, since, task.trace)
                        )
        return by_state, others

    def malformed_in_scope(self, malformed: Mapping[str, MalformedStatus]) -> list[str]:
        """Selected connectors whose entry did not decode and that belong to this scope.

        Cluster scope owns them all; worker scope those with one of this worker's ids among the
        ids still readable. Unknown owner: not in scope (shown in /status, judged by nobody).
        """
        return [
            name
            for name, entry in malformed.items()
            if self.selector.selected(name)
            and (self.scope == "cluster" or any(self.in_scope(w) for w in entry.worker_ids))
        ]

    def scoped_objects(self, tracked: Mapping[str, Tracked]) -> Iterator[ObjectView]:
        """Selected connector instances and tasks in scope."""
        for name, entry in tracked.items():
            if not self.selector.selected(name):
                continue
            status = entry.status
            conn = status.connector
            if self.in_scope(conn.worker_id):
                yield ObjectView(
                    name, None, conn.state, conn.worker_id, entry.connector_since, conn.trace
                )
            for task, since in zip(status.tasks, entry.task_since, strict=True):
                if self.in_scope(task.worker_id):
                    yield ObjectView(name, task.id, task.state, task.worker_id, since, task.trace)


def iso(monotonic_time: float, wall_offset: float) -> str:
    """A monotonic instant as an ISO-8601 UTC wall-clock time."""
    moment = datetime.fromtimestamp(monotonic_time + wall_offset, tz=UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def short(name: str, limit: int = 120) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def describe(obj: ObjectView) -> str:
    what = f"connector {short(obj.connector)!r}"
    if obj.task is not None:
        what = f"task {obj.task} of {what}"
    return what


# Order of attention in reasons: failures first, then unknown states, then the rest.
def _severity(state: str) -> int:
    if state == FAILED:
        return 0
    if state not in KNOWN_STATES:
        return 1
    return 2


Ranked = tuple[int, str, int, ObjectView]


def _ranked(obj: ObjectView) -> Ranked:
    """Sort key for reasons: severity, connector name, task id (connector instance first)."""
    return (_severity(obj.state), obj.connector, -1 if obj.task is None else obj.task, obj)


def _object_reason(obj: ObjectView, wall_offset: float, note: str = "") -> Reason:
    state = obj.state if obj.state in KNOWN_STATES else f"{obj.state} (unknown state)"
    return Reason(
        code="task_state" if obj.task is not None else "connector_state",
        message=f"{describe(obj)} is {state} on worker {short(obj.worker_id, 80)}{note}",
        connector=short(obj.connector, 200),
        task=obj.task,
        state=obj.state[:40],
        worker_id=short(obj.worker_id, 80),
        since=iso(obj.since, wall_offset),
        trace=first_line(obj.trace),
    )


def _malformed_reason(name: str, entry: MalformedStatus) -> Reason:
    owner = f" (worker {short(entry.worker_ids[0], 80)})" if entry.worker_ids else ""
    return Reason(
        code="status_malformed",
        message=f"connector {short(name)!r}{owner} has a status entry that could not be "
        f"decoded: {entry.error}",
        connector=short(name, 200),
        worker_id=short(entry.worker_ids[0], 80) if entry.worker_ids else None,
    )


def _failed_note(obj: ObjectView, notes: Mapping[tuple[str, int | None], str] | None) -> str:
    if not notes or obj.state != FAILED:
        return ""
    return notes.get((obj.connector, obj.task), "")


def _connection_reasons(state: PollState, rules: Rules, now: float) -> list[Reason]:
    """Reasons that make every object verdict moot: no data, failed poll, stale data."""
    if state.snapshot is None:
        detail = f": {state.failure.message}" if state.failure else ""
        code = state.failure.code if state.failure else "no_poll_yet"
        return [Reason(code, f"no successful poll of Kafka Connect yet{detail}")]
    if state.failure is not None:
        return [Reason(state.failure.code, state.failure.message)]
    assert state.last_success is not None
    age = now - state.last_success
    if age > rules.max_age:
        return [
            Reason(
                "stale",
                f"the last successful poll is {age:.0f}s old (MAX_AGE {rules.max_age:g}s): "
                "the poll is stuck",
            )
        ]
    health = state.snapshot.health
    if health.kind == "starting":
        return [Reason("worker_starting", f"Connect's /health says starting: {health.message}")]
    if health.kind == "unhealthy":
        return [Reason("worker_unhealthy", f"Connect's /health says unhealthy: {health.message}")]
    if health.kind == "timeout":
        return [Reason("worker_unhealthy", health.message)]
    return []


def evaluate_ready(
    state: PollState,
    rules: Rules,
    now: float,
    wall_offset: float,
    notes: Mapping[tuple[str, int | None], str] | None = None,
) -> Verdict:
    """Readiness: reachable, fresh, healthy, and the selected objects in scope in ready states.

    ``notes``: text appended to the reasons of FAILED objects, keyed by (connector, task or None);
    the auto-restarter passes its schedule this way so this module stays pure.
    """
    blocking = _connection_reasons(state, rules, now)
    if blocking:
        valid_until = math.inf
        if state.snapshot is not None and state.failure is None and blocking[0].code != "stale":
            assert state.last_success is not None
            valid_until = state.last_success + rules.max_age
        return Verdict(
            "ready",
            False,
            f"not ready: {blocking[0].message}",
            tuple(blocking),
            valid_until=valid_until,
        )
    assert state.last_success is not None
    valid_until = state.last_success + rules.max_age

    unhealthy: list[Ranked] = []
    pending = 0
    by_state, not_ready = rules.census(state.tracked)
    malformed = rules.malformed_in_scope(state.snapshot.malformed) if state.snapshot else []
    in_scope = sum(by_state.values()) + len(malformed)
    for view in not_ready:
        if view.state in rules.transient_states:
            deadline = view.since + rules.transient_grace
            if now < deadline:
                pending += 1
                valid_until = min(valid_until, deadline)
                continue
        unhealthy.append(_ranked(view))

    reasons: list[Reason] = [
        _malformed_reason(name, state.snapshot.malformed[name])
        for name in sorted(malformed)[:DETAILED_REASONS]
        if state.snapshot is not None
    ]
    reasons += [
        _object_reason(item[3], wall_offset, _failed_note(item[3], notes))
        for item in heapq.nsmallest(
            DETAILED_REASONS - len(reasons), unhealthy, key=lambda item: item[:3]
        )
    ]
    unhealthy_count = len(unhealthy) + len(malformed)
    omitted = unhealthy_count - len(reasons)
    allowed = rules.max_unhealthy.allowed(in_scope)
    objects_ok = unhealthy_count <= allowed

    missing: list[Reason] = []
    for name in rules.required:
        since = state.missing_since.get(name)
        if since is None:
            continue
        deadline = since + rules.transient_grace
        if now < deadline:
            valid_until = min(valid_until, deadline)
            continue
        missing.append(
            Reason(
                "required_missing",
                f"required connector {short(name)!r} does not exist (or has no status) "
                f"since {iso(since, wall_offset)}",
                connector=short(name, 200),
                since=iso(since, wall_offset),
            )
        )

    counts = {
        "in_scope": in_scope,
        "unhealthy": unhealthy_count,
        "pending": pending,
        "allowed_unhealthy": allowed,
        **{f"state_{name}": count for name, count in sorted(by_state.items())[:20]},
    }
    ok = objects_ok and not missing
    if ok:
        summary = f"ready: {in_scope} connector instances and tasks in scope"
        if unhealthy_count:
            summary += (
                f", {unhealthy_count} unhealthy tolerated (MAX_UNHEALTHY {rules.max_unhealthy})"
            )
        if pending:
            summary += f", {pending} in a transient state within TRANSIENT_GRACE"
        return Verdict("ready", True, summary, tuple(reasons), omitted, counts, valid_until)
    shown = missing + (reasons if not objects_ok else [])
    parts = []
    if not objects_ok:
        parts.append(
            f"{unhealthy_count} of {in_scope} connector instances and tasks in scope "
            f"are not ready (allowed: {allowed})"
        )
    if missing:
        parts.append(f"{len(missing)} required connector(s) missing")
    return Verdict(
        "ready",
        False,
        "not ready: " + "; ".join(parts),
        tuple(shown),
        omitted if not objects_ok else 0,
        counts,
        valid_until,
    )


def evaluate_live(state: PollState, rules: Rules, now: float, wall_offset: float) -> Verdict:
    """Liveness: fails only when Connect itself has been broken for LIVE_GRACE (after startup)."""
    startup_end = max(state.started, state.connect_started or state.started) + rules.startup_grace
    valid_until = math.inf
    reasons: list[Reason] = []
    notes: list[str] = []
    if state.live_trouble_since is not None:
        counted_from = max(state.live_trouble_since, startup_end)
        deadline = counted_from + rules.live_grace
        trouble = state.live_trouble or "Connect is not answering"
        if now >= deadline:
            reasons.append(
                Reason(
                    state.failure.code if state.failure else "worker_unhealthy",
                    f"{trouble} (continuously since {iso(state.live_trouble_since, wall_offset)}, "
                    f"LIVE_GRACE {rules.live_grace:g}s)",
                    since=iso(state.live_trouble_since, wall_offset),
                )
            )
        else:
            valid_until = deadline
            notes.append(f"{trouble}; tolerated until {iso(deadline, wall_offset)}")

    if rules.live_fail_states and state.snapshot is not None:
        failing: list[Ranked] = []
        for obj in rules.scoped_objects(state.tracked):
            if obj.state not in rules.live_fail_states:
                continue
            deadline = max(obj.since, startup_end) + rules.live_grace
            if now >= deadline:
                failing.append(_ranked(obj))
            else:
                valid_until = min(valid_until, deadline)
        detailed = heapq.nsmallest(DETAILED_REASONS, failing, key=lambda item: item[:3])
        reasons.extend(
            _object_reason(
                item[3], wall_offset, f" (LIVE_FAIL_STATES, longer than {rules.live_grace:g}s)"
            )
            for item in detailed
        )
        omitted = len(failing) - len(detailed)
    else:
        omitted = 0

    if reasons:
        return Verdict(
            "live",
            False,
            f"not live: {reasons[0].message}",
            tuple(reasons),
            omitted,
            valid_until=valid_until,
        )
    summary = "live"
    if now < startup_end:
        valid_until = min(valid_until, startup_end)
        summary += f" (within STARTUP_GRACE until {iso(startup_end, wall_offset)})"
    if notes:
        summary += ": " + "; ".join(notes)
    return Verdict("live", True, summary, valid_until=valid_until)
