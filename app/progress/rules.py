"""Per-task progress verdicts over a sliding window, like Burrow's, from periodic Kafka reads. Pure.

Each progress read gives, for every RUNNING sink task on this worker, its group member (found by
Connect's client id ``connector-consumer-<connector>-<task>``), the partitions assigned to it,
the group's committed offsets and the partitions' log-end offsets. A task's lag is the sum over
its partitions of ``log-end - committed`` (a partition never committed counts from its log-start
offset: Connect's sink consumers start at the earliest offset by default).

Kafka's admin API carries no commit timestamps, so the judge keeps its own ring of samples per
task: every sample of the last ``window`` seconds, plus the newest older one (the anchor). Then:

* ``not_consuming``: Connect says RUNNING, but the group has had no member with the task's client
  id for longer than NOT_CONSUMING_GRACE (the consumer left after ``max.poll.interval.ms`` because
  ``put()`` blocks, or never joined). Not raised while the group's members carry other client ids
  (a ``client.id`` override makes tasks unrecognisable: ``unknown`` then);
* ``stalled``: the samples span the whole window, the lag was above ALLOWED_LAG in every one of
  them, and the task's committed offsets are the same at both ends (Burrow's STOP/STALL);
* ``behind``: committed offsets moved, but the lag never decreased across the window and grew
  (Burrow's WARN; informational only);
* ``idle``: no lag; ``ok``: anything else (including a window not yet covered);
* ``unknown``: not read yet, Kafka unreachable, group id unknown, or no member yet within grace.

What never gets flagged, by construction: an idle sink (no lag), a sink catching up (commits
move), a rebalance (a new member or assignment starts a fresh window; a short absence is within
grace), a new connector (its window is not covered yet).
"""

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

TopicPartition = tuple[str, int]
TaskKey = tuple[str, int]

OK: Final = "ok"
IDLE: Final = "idle"
BEHIND: Final = "behind"
STALLED: Final = "stalled"
NOT_CONSUMING: Final = "not_consuming"
UNKNOWN: Final = "unknown"
PROGRESS_STATES: Final = (OK, IDLE, BEHIND, STALLED, NOT_CONSUMING, UNKNOWN)
FLAGGED: Final = frozenset({STALLED, NOT_CONSUMING})

# How many of a task's partitions a verdict names (the ones with the most lag).
TOP_PARTITIONS: Final = 3
NO_COMMIT: Final = -1


def client_id(connector: str, task: int) -> str:
    """The ``client.id`` Connect gives a sink task's consumer (``Worker.java``)."""
    return f"connector-consumer-{connector}-{task}"


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a consumer group as described by the group coordinator."""

    member_id: str
    client_id: str
    host: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class GroupRead:
    """One group: its members and its committed offsets (partitions never committed are absent)."""

    group: str
    members: tuple[Member, ...]
    committed: Mapping[TopicPartition, int]
    state: str = ""


@dataclass(frozen=True, slots=True)
class KafkaRead:
    """One progress read: groups by id, log-end (and, where needed, log-start) offsets."""

    groups: Mapping[str, GroupRead]
    ends: Mapping[TopicPartition, int]
    starts: Mapping[TopicPartition, int] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)  # group -> why it was not read


@dataclass(frozen=True, slots=True)
class TaskRef:
    """A RUNNING sink task on this worker; ``group`` is None while its group id is unknown."""

    connector: str
    task: int
    worker_id: str
    group: str | None


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """The verdict on one task. ``since``: monotonic time the reported condition started."""

    connector: str
    task: int
    worker_id: str
    group: str | None
    state: str
    since: float | None
    lag: int | None = None
    lagging: tuple[tuple[str, int, int], ...] = ()  # (topic, partition, lag), most lag first
    partitions: int = 0
    host: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    lag: int
    committed: tuple[int, ...]  # aligned with the task's partitions; NO_COMMIT if none


@dataclass(slots=True)
class _History:
    first_seen: float
    member_id: str | None = None
    partitions: tuple[TopicPartition, ...] = ()
    samples: list[Sample] = field(default_factory=list)
    absent_since: float | None = None
    committed_since: float | None = None
    state: str = UNKNOWN
    state_since: float = 0.0


class ProgressJudge:
    """Keeps each task's samples and turns each read into verdicts. No I/O; time is passed in."""

    def __init__(
        self, *, allowed_lag: int, window: Callable[[str], float], not_consuming_grace: float
    ) -> None:
        self._allowed = allowed_lag
        self._window = window
        self._grace = not_consuming_grace
        self._histories: dict[TaskKey, _History] = {}

    def judge(
        self,
        tasks: Iterable[TaskRef],
        read: KafkaRead | None,
        now: float,
        failure: str | None = None,
    ) -> dict[TaskKey, TaskProgress]:
        """Verdicts for ``tasks`` after one read (``read`` None: Kafka could not be read, why in
        ``failure``). Tasks no longer listed are forgotten: they stopped, moved or were removed."""
        verdicts: dict[TaskKey, TaskProgress] = {}
        histories: dict[TaskKey, _History] = {}
        for ref in tasks:
            key = (ref.connector, ref.task)
            history = self._histories.get(key) or _History(first_seen=now, state_since=now)
            histories[key] = history
            verdict = self._one(ref, history, read, now, failure)
            if verdict.state != history.state:
                history.state, history.state_since = verdict.state, now
            verdicts[key] = verdict
        self._histories = histories
        return verdicts

    def _one(
        self,
        ref: TaskRef,
        history: _History,
        read: KafkaRead | None,
        now: float,
        failure: str | None,
    ) -> TaskProgress:
        def unknown(detail: str) -> TaskProgress:
            since = history.state_since if history.state == UNKNOWN else now
            return TaskProgress(
                ref.connector, ref.task, ref.worker_id, ref.group, UNKNOWN, since, detail=detail
            )

        if read is None:
            return unknown(failure or "Kafka has not been read yet")
        if ref.group is None:
            return unknown("the connector's consumer group id is not known yet")
        group = read.groups.get(ref.group)
        if group is None:
            why = read.errors.get(ref.group, "not read")
            return unknown(f"consumer group {ref.group!r} could not be read: {why}")

        member = _find_member(group.members, client_id(ref.connector, ref.task))
        if member is None:
            return self._absent(ref, history, group, now, unknown)
        history.absent_since = None
        partitions = tuple(sorted(member.partitions))
        if member.member_id != history.member_id or partitions != history.partitions:
            # A new consumer (restart, rejoin) or a new assignment (rebalance): a fresh window.
            history.member_id, history.partitions = member.member_id, partitions
            history.samples.clear()
            history.committed_since = None
        if not partitions:
            return TaskProgress(
                ref.connector, ref.task, ref.worker_id, ref.group, IDLE,
                _since(history, IDLE, now), lag=0, host=member.host,
                detail="no partition assigned to this task",
            )  # fmt: skip

        lags: list[tuple[str, int, int]] = []
        committed: list[int] = []
        for tp in partitions:
            end = read.ends.get(tp)
            offset = group.committed.get(tp)
            base = offset if offset is not None else read.starts.get(tp)
            if end is None or base is None:
                return unknown(f"the offsets of {tp[0]}-{tp[1]} could not be read")
            committed.append(offset if offset is not None else NO_COMMIT)
            lags.append((tp[0], tp[1], max(0, end - base)))
        lag = sum(item[2] for item in lags)
        sample = Sample(now, lag, tuple(committed))
        samples = history.samples
        if not samples or samples[-1].committed != sample.committed:
            history.committed_since = now
        samples.append(sample)
        window = self._window(ref.connector)
        while len(samples) >= 2 and samples[1].at <= now - window:
            samples.pop(0)

        lagging = tuple(
            sorted((item for item in lags if item[2] > 0), key=lambda item: -item[2])[
                :TOP_PARTITIONS
            ]
        )

        def verdict(state: str, since: float | None, detail: str) -> TaskProgress:
            return TaskProgress(
                ref.connector, ref.task, ref.worker_id, ref.group, state, since, lag,
                lagging, len(partitions), member.host, detail,
            )  # fmt: skip

        if lag == 0:
            return verdict(IDLE, _since(history, IDLE, now), "no lag")
        if lag <= self._allowed:
            return verdict(OK, _since(history, OK, now), "lag within ALLOWED_LAG")
        anchor = samples[0]
        watched = now - anchor.at
        if watched < window:
            return verdict(
                OK,
                _since(history, OK, now),
                f"lag {lag}; watched for {watched:.0f}s of the {window:g}s stall window",
            )
        moved = anchor.committed != sample.committed
        if not moved and all(item.lag > self._allowed for item in samples):
            return verdict(
                STALLED,
                history.committed_since,
                f"lag {lag} above ALLOWED_LAG {self._allowed} for the whole {window:g}s window "
                "while the committed offsets did not move",
            )
        if moved and sample.lag > anchor.lag and _never_decreased(samples):
            return verdict(
                BEHIND,
                _since(history, BEHIND, now),
                f"committing, but the lag grew from {anchor.lag} to {lag} over {watched:.0f}s",
            )
        return verdict(OK, _since(history, OK, now), f"lag {lag}, committed offsets moving")

    def _absent(
        self,
        ref: TaskRef,
        history: _History,
        group: GroupRead,
        now: float,
        unknown: Callable[[str], TaskProgress],
    ) -> TaskProgress:
        """No member with the task's client id: not consuming after the grace, unless the group's
        members carry client ids Connect did not make (then they cannot be told apart)."""
        prefix = f"connector-consumer-{ref.connector}-"
        if any(not m.client_id.startswith(prefix) for m in group.members):
            history.absent_since = None
            return unknown(
                f"the members of group {ref.group!r} do not carry Connect's client ids "
                f"({prefix}<task>): is client.id overridden? Tasks cannot be matched to members"
            )
        if history.absent_since is None:
            history.absent_since = now
            history.member_id = None  # whoever joins next starts a fresh window
        absent = now - history.absent_since
        if absent < self._grace:
            return unknown(
                f"no member of group {ref.group!r} with client id "
                f"{client_id(ref.connector, ref.task)} for {absent:.0f}s "
                f"(within NOT_CONSUMING_GRACE {self._grace:g}s)"
            )
        return TaskProgress(
            ref.connector, ref.task, ref.worker_id, ref.group, NOT_CONSUMING,
            history.absent_since,
            detail=f"RUNNING in Connect, but no member of consumer group {ref.group!r} has client "
            f"id {client_id(ref.connector, ref.task)} (for {absent:.0f}s): its consumer left the "
            "group (put() blocked longer than max.poll.interval.ms?) or never joined",
        )  # fmt: skip


def _find_member(members: Iterable[Member], wanted: str) -> Member | None:
    """The member with ``wanted`` as client id; with several (an old consumer not yet expired
    next to a new one), the one with partitions."""
    found = [member for member in members if member.client_id == wanted]
    if not found:
        return None
    return next((member for member in found if member.partitions), found[0])


def _since(history: _History, state: str, now: float) -> float:
    return history.state_since if history.state == state else now


def _never_decreased(samples: list[Sample]) -> bool:
    return all(later.lag >= earlier.lag for earlier, later in itertools.pairwise(samples))
