"""Readiness: this worker can do its job now. A gate, then a list of small checks.

The gate (``connection_reasons``) fails readiness outright when there is nothing current to judge:
no poll yet, a failed poll, stale data, or Connect's own /health saying no. Then each check in
``READY_CHECKS`` looks at one aspect and says what it found; ``evaluate_ready`` adds them up. A new
readiness rule is a new check function (with its own table test) appended to the list.
"""

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.connect.models import MalformedStatus
from app.pollstate import PollState
from app.rules import Rules
from app.states import FAILED
from app.verdict import (
    DETAILED_REASONS,
    Notes,
    RankKey,
    Verdict,
    iso,
    object_reason,
    rank_key,
    short,
)
from app.wire import Reason, ReasonCode


@dataclass(frozen=True, slots=True)
class Judging:
    """What every check is given."""

    state: PollState
    rules: Rules
    now: float
    wall_offset: float
    notes: Notes | None = None  # the auto-restarter's schedule, shown on FAILED objects


@dataclass(frozen=True, slots=True)
class Findings:
    """What one check found.

    ``unhealthy`` objects count against MAX_UNHEALTHY (``unhealthy_count`` of them; ``worst`` are
    the first DETAILED_REASONS by rank, already as reasons); ``failing`` reasons fail readiness
    whatever MAX_UNHEALTHY says. ``valid_until``: when time alone could change the finding.
    """

    in_scope: int = 0
    unhealthy_count: int = 0
    worst: tuple[tuple[RankKey, Reason], ...] = ()
    failing: tuple[Reason, ...] = ()
    pending: int = 0
    valid_until: float = math.inf
    counts: dict[str, int] = field(default_factory=dict)


ReadyCheck = Callable[[Judging], Findings]


# --- the gate ---------------------------------------------------------------------------------
def connection_reasons(state: PollState, rules: Rules, now: float) -> list[Reason]:
    """Reasons that make every object verdict moot: no data, failed poll, stale data, /health."""
    if state.snapshot is None:
        detail = f": {state.failure.message}" if state.failure else ""
        code = state.failure.code if state.failure else ReasonCode.NO_POLL_YET
        return [Reason(code, f"no successful poll of Kafka Connect yet{detail}")]
    if state.failure is not None:
        return [Reason(state.failure.code, state.failure.message)]
    assert state.last_success is not None
    age = now - state.last_success
    if age > rules.max_age:
        return [
            Reason(
                ReasonCode.STALE,
                f"the last successful poll is {age:.0f}s old (MAX_AGE {rules.max_age:g}s): "
                "the poll is stuck",
            )
        ]
    health = state.snapshot.health
    if health.kind == "starting":
        message = f"Connect's /health says starting: {health.message}"
        return [Reason(ReasonCode.WORKER_STARTING, message)]
    if health.kind == "unhealthy":
        message = f"Connect's /health says unhealthy: {health.message}"
        return [Reason(ReasonCode.WORKER_UNHEALTHY, message)]
    if health.kind == "kafka_unreachable":
        # Not live trouble by itself (app.liveness): Kafka down is down for every worker, and
        # restarting them all would only add a rebalance storm when it returns; only when the
        # sidecar's own Kafka reads succeed meanwhile (a zombie worker) does /live fail.
        message = (
            "Connect's /health says the worker is stuck waiting on Kafka (its connector statuses "
            f"are stale): {health.message}"
        )
        return [Reason(ReasonCode.KAFKA_UNREACHABLE, message)]
    if health.kind == "timeout":
        return [Reason(ReasonCode.WORKER_UNHEALTHY, health.message)]
    return []


# --- the checks -------------------------------------------------------------------------------
def objects_check(judging: Judging) -> Findings:
    """Connector instances and tasks in scope: ready states pass, transient ones for a while."""
    rules, now = judging.rules, judging.now
    by_state, not_ready = rules.census(judging.state.tracked)
    valid_until = math.inf
    pending = 0
    unhealthy = []
    for view in not_ready:
        if view.state in rules.transient_states:
            deadline = view.since + rules.transient_grace
            if now < deadline:
                pending += 1
                valid_until = min(valid_until, deadline)
                continue
        unhealthy.append(view)
    notes = judging.notes or {}
    worst = tuple(
        (
            rank_key(view),
            object_reason(
                view,
                judging.wall_offset,
                notes.get((view.connector, view.task), "") if view.state == FAILED else "",
            ),
        )
        for view in heapq.nsmallest(DETAILED_REASONS, unhealthy, key=rank_key)
    )
    return Findings(
        in_scope=sum(by_state.values()),
        unhealthy_count=len(unhealthy),
        worst=worst,
        pending=pending,
        valid_until=valid_until,
        counts={f"state_{name}": count for name, count in sorted(by_state.items())[:20]},
    )


def malformed_check(judging: Judging) -> Findings:
    """Status entries that did not decode and belong to this scope: each one unhealthy."""
    snapshot = judging.state.snapshot
    if snapshot is None or not snapshot.malformed:
        return Findings()
    names = sorted(judging.rules.malformed_in_scope(snapshot.malformed))
    worst = tuple(
        ((1, name, -1), _malformed_reason(name, snapshot.malformed[name]))
        for name in names[:DETAILED_REASONS]
    )
    return Findings(in_scope=len(names), unhealthy_count=len(names), worst=worst)


def required_check(judging: Judging) -> Findings:
    """REQUIRED_CONNECTORS that have not existed for longer than TRANSIENT_GRACE."""
    rules, now, state = judging.rules, judging.now, judging.state
    failing: list[Reason] = []
    valid_until = math.inf
    for name in rules.required:
        since = state.missing_since.get(name)
        if since is None:
            continue
        deadline = since + rules.transient_grace
        if now < deadline:
            valid_until = min(valid_until, deadline)
            continue
        when = iso(since, judging.wall_offset)
        failing.append(
            Reason(
                ReasonCode.REQUIRED_MISSING,
                f"required connector {short(name)!r} does not exist (or has no status) "
                f"since {when}",
                connector=short(name, 200),
                since=when,
            )
        )
    return Findings(failing=tuple(failing), valid_until=valid_until)


READY_CHECKS: tuple[ReadyCheck, ...] = (objects_check, malformed_check, required_check)


def _malformed_reason(name: str, entry: MalformedStatus) -> Reason:
    owner = f" (worker {short(entry.worker_ids[0], 80)})" if entry.worker_ids else ""
    return Reason(
        code=ReasonCode.STATUS_MALFORMED,
        message=f"connector {short(name)!r}{owner} has a status entry that could not be "
        f"decoded: {entry.error}",
        connector=short(name, 200),
        worker_id=short(entry.worker_ids[0], 80) if entry.worker_ids else None,
    )


# --- adding up ----------------------------------------------------------------------------------
def evaluate_ready(
    state: PollState,
    rules: Rules,
    now: float,
    wall_offset: float,
    notes: Notes | None = None,
    checks: Sequence[ReadyCheck] = READY_CHECKS,
) -> Verdict:
    """Readiness: the gate, then every check; unhealthy objects beyond MAX_UNHEALTHY or any
    failing reason make it 503."""
    blocking = connection_reasons(state, rules, now)
    if blocking:
        valid_until = math.inf
        if (
            state.snapshot is not None
            and state.failure is None
            and blocking[0].code != ReasonCode.STALE
        ):
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
    judging = Judging(state, rules, now, wall_offset, notes)
    found = [check(judging) for check in checks]

    in_scope = sum(f.in_scope for f in found)
    unhealthy = sum(f.unhealthy_count for f in found)
    pending = sum(f.pending for f in found)
    valid_until = min([state.last_success + rules.max_age, *(f.valid_until for f in found)])
    ranked = heapq.nsmallest(
        DETAILED_REASONS, (item for f in found for item in f.worst), key=lambda item: item[0]
    )
    reasons = [reason for _, reason in ranked]
    failing = [reason for f in found for reason in f.failing]
    allowed = rules.max_unhealthy.allowed(in_scope)
    objects_ok = unhealthy <= allowed
    counts = {
        "in_scope": in_scope,
        "unhealthy": unhealthy,
        "pending": pending,
        "allowed_unhealthy": allowed,
        **{key: value for f in found for key, value in f.counts.items()},
    }
    if objects_ok and not failing:
        summary = f"ready: {in_scope} connector instances and tasks in scope"
        if unhealthy:
            summary += f", {unhealthy} unhealthy tolerated (MAX_UNHEALTHY {rules.max_unhealthy})"
        if pending:
            summary += f", {pending} in a transient state within TRANSIENT_GRACE"
        omitted = unhealthy - len(reasons)
        return Verdict("ready", True, summary, tuple(reasons), omitted, counts, valid_until)
    parts = []
    if not objects_ok:
        parts.append(
            f"{unhealthy} of {in_scope} connector instances and tasks in scope "
            f"are not ready (allowed: {allowed})"
        )
    if failing:
        parts.append("; ".join(_failing_summary(failing)))
    shown = failing + (reasons if not objects_ok else [])
    return Verdict(
        "ready",
        False,
        "not ready: " + "; ".join(parts),
        tuple(shown),
        unhealthy - len(reasons) if not objects_ok else 0,
        counts,
        valid_until,
    )


def _failing_summary(failing: list[Reason]) -> list[str]:
    """One phrase per kind of failing reason, e.g. "2 required connector(s) missing"."""
    by_code: dict[ReasonCode, int] = {}
    for reason in failing:
        by_code[reason.code] = by_code.get(reason.code, 0) + 1
    phrases = []
    for code, count in by_code.items():
        if code == ReasonCode.REQUIRED_MISSING:
            phrases.append(f"{count} required connector(s) missing")
        elif code == ReasonCode.TASK_STALLED:
            phrases.append(f"{count} sink task(s) stalled on this worker")
        elif code == ReasonCode.TASK_NOT_CONSUMING:
            phrases.append(f"{count} sink task(s) not consuming on this worker")
        else:
            phrases.append(f"{count} x {code}")
    return phrases
