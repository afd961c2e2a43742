"""Liveness: fail only when restarting the Connect container would help. All of its policy is here.

Three decisions make up liveness, and each is a function below:

- what counts against it (``counts_against_liveness``): Connect unreachable, timing out or
  answering 5xx, or /health unhealthy; never a 401 (restarting won't fix credentials), a Jetty
  404 while starting, or a connector's state (unless LIVE_FAIL_STATES opts in);
- when STARTUP_GRACE applies again (``startup_rearmed``): a worker that answered goes away, once
  per stretch of trouble, so a restarted worker is not killed while it boots but a flapping one is
  still judged;
- the graces themselves (``evaluate_live``): trouble must last LIVE_GRACE, counted from the end of
  STARTUP_GRACE at the earliest.
"""

import heapq
import math

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


def evaluate_live(state: PollState, rules: Rules, now: float, wall_offset: float) -> Verdict:
    """Liveness: fails only when Connect itself has been broken for LIVE_GRACE (after startup)."""
    startup_end = startup_grace_end(state, rules.startup_grace)
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
                    state.failure.code if state.failure else ReasonCode.WORKER_UNHEALTHY,
                    f"{trouble} (continuously since {iso(state.live_trouble_since, wall_offset)}, "
                    f"LIVE_GRACE {rules.live_grace:g}s)",
                    since=iso(state.live_trouble_since, wall_offset),
                )
            )
        else:
            valid_until = deadline
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
