"""JSON bodies: compact probe answers (far below the kubelet's 10 KiB read) and /status."""

from collections.abc import Mapping
from typing import Any

import msgspec

from app.connect.decoding import first_line
from app.identity import Identity
from app.pollstate import PollState
from app.rules import Rules
from app.settings import Settings
from app.verdict import Verdict, iso
from app.wire import ProbeBody, Reason

# The kubelet reads at most 10 KiB of a probe body; stay far below whatever the reasons are.
PROBE_BODY_BUDGET = 8 * 1024
# Malformed entries listed by name in /status (all are counted).
MALFORMED_SHOWN = 100

_encoder = msgspec.json.Encoder()


def probe_body(
    verdict: Verdict,
    *,
    scope: str,
    worker_id: str | None,
    last_success: str | None,
) -> bytes:
    """The probe answer; reasons are added while the body stays within ``PROBE_BODY_BUDGET``."""
    body = ProbeBody(
        probe=verdict.probe,
        ok=verdict.ok,
        summary=verdict.summary[:1000],
        scope=scope,
        worker_id=worker_id,
        last_success=last_success,
        counts=verdict.counts,
        omitted=verdict.omitted + len(verdict.reasons),
        reasons=[],
    )
    used = len(_encoder.encode(body)) + 16  # room for the omitted count to shrink or grow
    kept: list[Reason] = []
    for reason in verdict.reasons:
        size = len(_encoder.encode(reason)) + 1
        if used + size > PROBE_BODY_BUDGET:
            break
        kept.append(reason)
        used += size
    omitted = verdict.omitted + len(verdict.reasons) - len(kept)
    return _encoder.encode(msgspec.structs.replace(body, omitted=omitted, reasons=kept))


def matched_worker_ids(state: PollState, identity: Identity) -> list[str]:
    """The worker ids in the cluster status that are this worker's."""
    distinct: set[str] = set()
    for entry in state.tracked.values():
        status = entry.status
        distinct.add(status.connector.worker_id)
        distinct.update(task.worker_id for task in status.tasks)
    return sorted(worker for worker in distinct if identity.matches(worker))


def status_page(
    *,
    state: PollState,
    rules: Rules,
    settings: Settings,
    ready: Verdict,
    live: Verdict,
    matched: list[str],
    now: float,
    wall_offset: float,
    version: str,
    auto_restart: Mapping[str, Any] | None = None,
    progress: Mapping[str, Any] | None = None,
) -> bytes:
    """Everything a human wants to see, secrets excluded; always answered with 200.

    ``auto_restart`` is the restarter's own section (attempts, last result, next attempt).
    """

    def when(moment: float | None) -> str | None:
        return iso(moment, wall_offset) if moment is not None else None

    def trace(text: str | None) -> str | None:
        return text if settings.expose_traces else first_line(text)

    connectors: list[dict[str, Any]] = []
    for name, entry in sorted(state.tracked.items()):
        if not rules.selector.selected(name):
            continue
        status = entry.status
        conn = status.connector
        tasks = [
            {
                "id": task.id,
                "state": task.state,
                "worker_id": task.worker_id,
                "since": when(since),
                "in_scope": rules.in_scope(task.worker_id),
                **({"trace": trace(task.trace)} if task.trace else {}),
            }
            for task, since in zip(status.tasks, entry.task_since, strict=True)
        ]
        conn_in_scope = rules.in_scope(conn.worker_id)
        if not conn_in_scope and not any(task["in_scope"] for task in tasks):
            continue
        connectors.append(
            {
                "name": name,
                "type": status.type,
                "connector": {
                    "state": conn.state,
                    "worker_id": conn.worker_id,
                    "since": when(entry.connector_since),
                    "in_scope": conn_in_scope,
                    **({"trace": trace(conn.trace)} if conn.trace else {}),
                },
                "tasks": tasks,
            }
        )

    snapshot = state.snapshot
    info = state.server_info
    page: Mapping[str, Any] = {
        "sidecar": {"version": version, "started": when(state.started)},
        "identity": {
            "worker_id": settings.worker_id,
            "explicit": rules.identity.explicit,
            "candidates": list(rules.identity.ordered),
            "matched": matched,
            "note": None
            if matched or rules.scope == "cluster"
            else "no connector or task in the cluster status carries one of this worker's "
            "candidate ids (a worker with nothing assigned, or WORKER_ID / "
            "rest.advertised.host.name mismatch)",
        },
        "scope": rules.scope,
        "ready": _verdict_dict(ready),
        "live": _verdict_dict(live),
        "poll": {
            "polls": state.polls,
            "last_attempt": when(state.last_attempt),
            "last_duration_seconds": round(state.last_duration, 4)
            if state.last_duration is not None
            else None,
            "last_success": when(state.last_success),
            "age_seconds": round(now - state.last_success, 3)
            if state.last_success is not None
            else None,
            "error": {"code": state.failure.code, "message": state.failure.message}
            if state.failure
            else None,
        },
        "connect": {
            "url": settings.connect_url,
            "version": info.version if info else None,
            "commit": info.commit if info else None,
            "kafka_cluster_id": info.kafka_cluster_id if info else None,
            "health": {"status": snapshot.health.kind, "message": snapshot.health.message}
            if snapshot
            else None,
            "legacy_api": snapshot.legacy_api if snapshot else None,
            "connectors_total": snapshot.connector_count if snapshot else None,
        },
        "connectors": connectors,
        # Entries that did not decode: each judged on its own (reason status_malformed when in
        # scope); ``worker_ids`` empty means nobody's for sure, so no probe fails for it.
        "malformed": {
            "count": len(snapshot.malformed) if snapshot else 0,
            "entries": {
                name: {"error": entry.error, "worker_ids": list(entry.worker_ids)}
                for name, entry in sorted(snapshot.malformed.items())[:MALFORMED_SHOWN]
            }
            if snapshot
            else {},
        },
        "missing_required": {name: when(since) for name, since in state.missing_since.items()},
        "auto_restart": auto_restart if auto_restart is not None else {"enabled": False},
        "progress": progress if progress is not None else {"enabled": False},
        "settings": settings.public_view(),
    }
    return _encoder.encode(page)


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    return {
        "ok": verdict.ok,
        "summary": verdict.summary,
        "reasons": list(verdict.reasons),
        "omitted": verdict.omitted,
        "counts": verdict.counts,
    }
