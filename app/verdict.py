"""What a probe answers, and how objects read in a reason; shared by readiness and liveness.

Readiness = this worker can do its job now (app/readiness.py). Liveness = restarting the Connect
container would help (app/liveness.py). Both are pure functions of the poll state, the rules and
the time; the README's table explains each rule, tests/test_rules.py pins them down.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.connect.decoding import first_line
from app.rules import ObjectView
from app.states import FAILED, KNOWN_STATES
from app.wire import Reason, ReasonCode

# How many object reasons a verdict keeps in detail; the rest are counted.
DETAILED_REASONS = 50
# Text the auto-restarter appends to FAILED objects' reasons, keyed by (connector, task or None).
Notes = Mapping[tuple[str, int | None], str]


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
def severity(state: str) -> int:
    if state == FAILED:
        return 0
    if state not in KNOWN_STATES:
        return 1
    return 2


RankKey = tuple[int, str, int]


def rank_key(obj: ObjectView) -> RankKey:
    """Sort key for reasons: severity, connector name, task id (connector instance first)."""
    return (severity(obj.state), obj.connector, -1 if obj.task is None else obj.task)


def object_reason(obj: ObjectView, wall_offset: float, note: str = "") -> Reason:
    state = obj.state if obj.state in KNOWN_STATES else f"{obj.state} (unknown state)"
    return Reason(
        code=ReasonCode.TASK_STATE if obj.task is not None else ReasonCode.CONNECTOR_STATE,
        message=f"{describe(obj)} is {state} on worker {short(obj.worker_id, 80)}{note}",
        connector=short(obj.connector, 200),
        task=obj.task,
        state=obj.state[:40],
        worker_id=short(obj.worker_id, 80),
        since=iso(obj.since, wall_offset),
        trace=first_line(obj.trace),
    )
