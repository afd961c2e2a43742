"""How progress verdicts amend the probes' answers and fill /status. Pure.

``stalled`` and ``not_consuming`` fail /ready (and /live with LIVE_FAIL_ON_STALL), with reasons
``task_stalled`` / ``task_not_consuming`` naming connector, task, worker, the partitions with the
most lag, the lag and since when. ``unknown`` never fails a probe: a wrong password on the
sidecar, or Kafka being down, must not take every worker out of service.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from app.progress.config import ProgressConfig
from app.progress.hook import SOURCES_NOTE
from app.progress.loop import ProgressView
from app.progress.rules import NOT_CONSUMING, PROGRESS_STATES, STALLED, TaskProgress
from app.readiness import Findings, Judging
from app.verdict import DETAILED_REASONS, Verdict, iso, short
from app.wire import Reason, ReasonCode

CODES: Final = {STALLED: ReasonCode.TASK_STALLED, NOT_CONSUMING: ReasonCode.TASK_NOT_CONSUMING}


def _partitions(verdict: TaskProgress) -> str:
    return ", ".join(f"{short(topic, 80)}-{part} ({lag})" for topic, part, lag in verdict.lagging)


def reason(
    verdict: TaskProgress, config: ProgressConfig, now: float, wall_offset: float, note: str = ""
) -> Reason:
    """The probe reason for a flagged task."""
    since = verdict.since if verdict.since is not None else now
    what = f"task {verdict.task} of connector {short(verdict.connector)!r}"
    where = f"on worker {short(verdict.worker_id, 80)}"
    if verdict.state == STALLED:
        window = config.windows.window(verdict.connector)
        message = (
            f"{what} {where} has not committed since {iso(since, wall_offset)} "
            f"({now - since:.0f}s, stall window {window:g}s) with {verdict.lag} records waiting"
        )
        if verdict.lagging:
            message += f"; most lag: {_partitions(verdict)}"
    else:
        message = (
            f"{what} {where} is RUNNING but its consumer has not been in group "
            f"{short(verdict.group or '?', 120)!r} since {iso(since, wall_offset)} "
            f"({now - since:.0f}s): put() blocked past max.poll.interval.ms, or it never joined"
        )
    return Reason(
        CODES[verdict.state],
        message + note,
        connector=short(verdict.connector, 200),
        task=verdict.task,
        state="RUNNING",
        worker_id=short(verdict.worker_id, 80),
        since=iso(since, wall_offset),
    )


def ready_findings(
    judging: Judging,
    view: ProgressView,
    config: ProgressConfig,
    notes: Mapping[tuple[str, int | None], str] | None = None,
) -> Findings:
    """The readiness check: every stalled or not-consuming task fails readiness (whatever
    MAX_UNHEALTHY says), the first DETAILED_REASONS named."""
    flagged = view.flagged()
    counts = {
        f"progress_{state}": sum(1 for v in flagged if v.state == state)
        for state in (STALLED, NOT_CONSUMING)
    }
    failing = tuple(
        reason(
            v,
            config,
            judging.now,
            judging.wall_offset,
            (notes or {}).get((v.connector, v.task), ""),
        )
        for v in flagged[:DETAILED_REASONS]
    )
    return Findings(failing=failing, counts=counts)


def amend(
    verdict: Verdict,
    view: ProgressView,
    config: ProgressConfig,
    now: float,
    wall_offset: float,
    notes: Mapping[tuple[str, int | None], str] | None = None,
) -> Verdict:
    """``verdict`` with the flagged tasks added (``notes``: the stall restarter's schedule)."""
    if verdict.probe == "live" and not config.live_fail_on_stall:
        return verdict
    flagged = view.flagged()
    counts = dict(verdict.counts)
    if verdict.probe == "ready":
        for state in (STALLED, NOT_CONSUMING):
            counts[f"progress_{state}"] = sum(1 for v in flagged if v.state == state)
    if not flagged:
        return dataclasses.replace(verdict, counts=counts) if counts != verdict.counts else verdict
    shown = flagged[:DETAILED_REASONS]
    reasons = tuple(
        reason(v, config, now, wall_offset, (notes or {}).get((v.connector, v.task), ""))
        for v in shown
    )
    stalled = sum(1 for v in flagged if v.state == STALLED)
    part = f"{stalled} sink task(s) stalled, {len(flagged) - stalled} not consuming on this worker"
    if verdict.ok:
        summary = f"not {verdict.probe}: {part}"
        all_reasons = reasons
        omitted = len(flagged) - len(shown)
    else:
        summary = f"{verdict.summary}; {part}"
        all_reasons = verdict.reasons + reasons
        omitted = verdict.omitted + len(flagged) - len(shown)
    return dataclasses.replace(
        verdict, ok=False, summary=summary, reasons=all_reasons, omitted=omitted, counts=counts
    )


def task_dict(verdict: TaskProgress, config: ProgressConfig, wall_offset: float) -> dict[str, Any]:
    return {
        "connector": verdict.connector,
        "task": verdict.task,
        "worker_id": verdict.worker_id,
        "group": verdict.group,
        "state": verdict.state,
        "since": iso(verdict.since, wall_offset) if verdict.since is not None else None,
        "lag": verdict.lag,
        "partitions": verdict.partitions,
        "most_lag": [
            {"topic": topic, "partition": part, "lag": lag} for topic, part, lag in verdict.lagging
        ],
        "member_host": verdict.host,
        "stall_window_seconds": config.windows.window(verdict.connector),
        "detail": verdict.detail,
    }


def status_section(
    view: ProgressView,
    config: ProgressConfig,
    kafka: Mapping[str, Any],
    wall_offset: float,
    auto_restart: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``progress`` section of /status."""
    by_state = dict.fromkeys(PROGRESS_STATES, 0)
    for verdict in view.verdicts.values():
        by_state[verdict.state] = by_state.get(verdict.state, 0) + 1
    return {
        "enabled": True,
        "judges": "RUNNING sink tasks on this worker, through their consumer groups",
        "sources": f"{SOURCES_NOTE} ({view.source_tasks} RUNNING source task(s) here)",
        "interval_seconds": config.interval,
        "allowed_lag": config.allowed_lag,
        "stall_window_seconds": config.windows.default,
        "stall_windows": [f"{pattern}={seconds:g}" for pattern, seconds in config.windows.entries],
        "not_consuming_grace_seconds": config.not_consuming_grace,
        "live_fail_on_stall": config.live_fail_on_stall,
        "kafka": {
            **kafka,
            "up": view.kafka_up,
            "error": view.failure,
            "last_read": iso(view.last_read, wall_offset) if view.last_read is not None else None,
            "last_duration_seconds": round(view.last_duration, 4)
            if view.last_duration is not None
            else None,
            "groups": view.groups,
            # The second opinion on a lost Kafka (app.liveness): read without a break since then.
            "reachable_since": iso(view.reachable_since, wall_offset)
            if view.reachable_since is not None
            else None,
        },
        "counts": by_state,
        "tasks": [
            task_dict(v, config, wall_offset)
            for _, v in sorted(view.verdicts.items(), key=lambda item: item[0])
        ],
        "auto_restart_stalled": auto_restart,
    }
