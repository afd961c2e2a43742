"""Liveness: fail only when restarting the Connect container would help. All of its policy is here.

Three decisions make up liveness, and each is a function below:

- what counts against it (``counts_against_liveness``): Connect unreachable, timing out or
  answering 5xx, or /health unhealthy; never a 401 (restarting won't fix credentials), a Jetty
  404 while starting, or a connector's state (unless LIVE_FAIL_STATES opts in);
- when STARTUP_GRACE applies again (``startup_rearmed``): a worker that answered goes away, once
  per stretch of trouble, so a restarted worker is not killed while it boots but a flapping one is
  still judged;
- the graces themselves (``evaluate_live``): trouble must last LIVE_GRACE, counted from the end of
  STARTUP_GRACE at the earliest;
- the second opinion on a lost Kafka (``zombie_since``): Connect's /health saying the worker
  cannot reach Kafka is not trouble by itself (Kafka down is down for every worker, and restarting
  them all only adds a rebalance storm when it returns), but it is when the sidecar's own Kafka
  reads (progress checks) succeed meanwhile: then only this worker lost Kafka, and a restart is
  the cure.
"""

import heapq
import math
from dataclasses import dataclass

from app.pollstate import PollFailure, PollState
from app.rules import ObjectView, Rules
from app.verdict import DETAILED_REASONS, Verdict, iso, object_reason, rank_key
from app.wire import Reason, ReasonCode

# Failures of a poll that mean Connect itself is broken (as far as a restart could fix it).
_ALWAYS_LIVE_TROUBLE = frozenset({ReasonCode.CONNECT_UNREACHABLE, ReasonCode.CONNECT_TIMEOUT})


def counts_against_liveness(code: ReasonCode, status_code: int | None = None) -> bool:
    """Whether a failed poll is the kind of trouble a restart of Connect could fix."""
    if code in _ALWAYS_LIVE_TROUBLE:
        return True
    return code == ReasonCode.CONNECT_HTTP_ERROR and status_code is not None and status_code >= 500


def startup_grace_end(state: PollState, startup_grace: float) -> float:
    """Until when nothing counts against liveness: STARTUP_GRACE after the sidecar's start or
    after Connect last (re)started as far as the sidecar can tell."""
    return max(state.started, state.connect_started or state.started) + startup_grace


def startup_rearmed(previous: PollState, failure: PollFailure) -> bool:
    """Whether this failed poll means Connect (re)started, so STARTUP_GRACE applies again.

    A worker that answered goes away (its container restarted, possibly because of /live), but
    only once per stretch of trouble: a worker flapping between refusing connections and failing
    otherwise would never be judged.
    """
    went_away = failure.code == ReasonCode.CONNECT_UNREACHABLE and (
        previous.failure is None or previous.failure.code != ReasonCode.CONNECT_UNREACHABLE
    )
    return went_away and previous.polls > 0 and not previous.startup_rearmed


@dataclass(frozen=True, slots=True)
class KafkaEvidence:
    """The sidecar's own Kafka reads (progress checks): they have succeeded continuously since
    ``since``, the latest at ``as_of``, which counts as current until ``as_of + fresh_for``."""

    since: float
    as_of: float
    fresh_for: float


def zombie_since(state: PollState, kafka: KafkaEvidence | None, now: float) -> float | None:
    """Since when this worker has been a zombie, or None when it is not (known to be) one.

    A zombie: Connect's /health says the worker cannot reach Kafka, yet the sidecar, in the same
    pod, read Kafka after the worker lost it and its reads are current. Counted from the later of
    the two, so that when Kafka comes back for everyone the worker gets a whole LIVE_GRACE to
    notice before its stale "cannot reach Kafka" counts. No current read (progress checks off,
    no sink task to read, or the sidecar's reads fail too): Kafka may be down for everyone, and
    that is never liveness trouble.
    """
    lost = state.kafka_lost_since
    if lost is None or state.failure is not None or kafka is None:
        return None
    if kafka.as_of < lost or now > kafka.as_of + kafka.fresh_for:
        return None
    return max(lost, kafka.since)


def _trouble(
    state: PollState, kafka: KafkaEvidence | None, now: float, wall_offset: float
) -> tuple[float, str, ReasonCode] | None:
    """The current stretch of liveness trouble: since when, what, and its reason code."""
    if state.live_trouble_since is not None:
        return (
            state.live_trouble_since,
            state.live_trouble or "Connect is not answering",
            state.failure.code if state.failure else ReasonCode.WORKER_UNHEALTHY,
        )
    since = zombie_since(state, kafka, now)
    if since is None or kafka is None:
        return None
    assert state.kafka_lost_since is not None
    return (
        since,
        f"Connect's /health says this worker cannot reach Kafka (since "
        f"{iso(state.kafka_lost_since, wall_offset)}), yet the sidecar read Kafka at "
        f"{iso(kafka.as_of, wall_offset)}: only this worker lost Kafka (a zombie); a restart "
        "is the cure",
        ReasonCode.KAFKA_UNREACHABLE,
    )


def evaluate_live(
    state: PollState,
    rules: Rules,
    now: float,
    wall_offset: float,
    kafka: KafkaEvidence | None = None,
) -> Verdict:
    """Liveness: fails only when Connect itself has been broken for LIVE_GRACE (after startup).
    ``kafka``: the sidecar's own Kafka reads, when progress checks are on (the zombie check)."""
    startup_end = startup_grace_end(state, rules.startup_grace)
    valid_until = math.inf
    reasons: list[Reason] = []
    notes: list[str] = []
    trouble_now = _trouble(state, kafka, now, wall_offset)
    if kafka is not None and state.kafka_lost_since is not None:
        stale_at = kafka.as_of + kafka.fresh_for
        if stale_at > now:  # the second opinion goes stale then, and the verdict may change
            valid_until = stale_at
    if trouble_now is not None:
        trouble_since, trouble, code = trouble_now
        counted_from = max(trouble_since, startup_end)
        deadline = counted_from + rules.live_grace
        if now >= deadline:
            reasons.append(
                Reason(
                    code,
                    f"{trouble} (continuously since {iso(trouble_since, wall_offset)}, "
                    f"LIVE_GRACE {rules.live_grace:g}s)",
                    since=iso(trouble_since, wall_offset),
                )
            )
        else:
            valid_until = min(valid_until, deadline)
            notes.append(f"{trouble}; tolerated until {iso(deadline, wall_offset)}")

    if rules.live_fail_states and state.snapshot is not None:
        failing: list[ObjectView] = []
        for obj in rules.scoped_objects(state.tracked):
            if obj.state not in rules.live_fail_states:
                continue
            deadline = max(obj.since, startup_end) + rules.live_grace
            if now >= deadline:
                failing.append(obj)
            else:
                valid_until = min(valid_until, deadline)
        detailed = heapq.nsmallest(DETAILED_REASONS, failing, key=rank_key)
        reasons.extend(
            object_reason(
                obj, wall_offset, f" (LIVE_FAIL_STATES, longer than {rules.live_grace:g}s)"
            )
            for obj in detailed
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
