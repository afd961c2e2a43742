"""Opt-in auto-restart (AUTO_RESTART): FAILED connectors and tasks on this worker, with backoff.

Kafka Connect never restarts a FAILED task by itself, and letting liveness kill the pod restarts
every connector on the worker and rebalances the whole group. So after each successful poll the
poll loop calls ``Restarter.after_poll``, which restarts what is FAILED *on this worker*:

* Only objects whose ``worker_id`` is this worker's (its identity, whatever ``SCOPE`` says): with
  one sidecar per worker, each FAILED object has exactly one sidecar responsible for it.
* Only connectors selected by INCLUDE/EXCLUDE; only FAILED objects. A connector whose instance is
  PAUSED or STOPPED (someone's intent) or RESTARTING (a restart is already in flight) is left
  alone entirely; UNASSIGNED/RUNNING/PAUSED tasks are never restarted.
* ``POST /connectors/{name}/restart?includeTasks=true&onlyFailed=true`` (KIP-745, Connect ≥ 3.0)
  when every FAILED object of the connector is on this worker — that call is connector-wide, so it
  would also restart FAILED tasks on other workers. Otherwise, and on older or unknown versions,
  one ``POST /connectors/{name}/restart`` for a FAILED connector instance and one
  ``POST /connectors/{name}/tasks/{id}/restart`` per FAILED task.
* Per connector, Strimzi's backoff: attempt n+1 waits min((n² + n) units, BACKOFF_MAX) after
  attempt n (0, 2, 6, 12, 20, 30, 42, 56, then 60 minutes with the defaults). A 409 (rebalance),
  a timeout or an unreachable worker is retried at the next poll and does not count. After
  AUTO_RESTART_MAX attempts it gives up (one log line). The count is forgotten once the connector
  has had no FAILED object here for longer than its current backoff.
* Nothing is sent while Connect's ``/health`` says starting/unhealthy: requests would only queue
  behind the stuck herder thread.

State lives in memory only: a restarted sidecar starts counting afresh.
"""

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.clock import Clock
from app.connect.client import (
    ConnectClient,
    ConnectConflict,
    ConnectError,
    ConnectHTTPError,
    ConnectStarting,
    ConnectTimeout,
    ConnectUnreachable,
    supports_restart_plan,
)
from app.logs import safe
from app.pollstate import PollState
from app.rules import Rules
from app.settings import Settings
from app.states import FAILED, PAUSED, RESTARTING, STOPPED
from app.tracking import Tracked
from app.verdict import iso

logger = logging.getLogger(__name__)

# Results, also the ``result`` label of ``connect_probe_restarts_total``.
RESTARTED: Final = "restarted"  # Connect accepted the restart (2xx); counts as an attempt
ERROR: Final = "error"  # any other answer (5xx, 401/403, ...); counts as an attempt
CONFLICT: Final = "conflict"  # 409: rebalance in progress; retried at the next poll
TIMEOUT: Final = "timeout"  # no answer within TIMEOUT; retried at the next poll
UNREACHABLE: Final = "unreachable"  # connection refused/reset; retried at the next poll
NOT_FOUND: Final = "not_found"  # 404: the connector was deleted meanwhile; not counted
GAVE_UP: Final = "gave_up"  # AUTO_RESTART_MAX reached; not a request
RESULTS: Final = (RESTARTED, ERROR, CONFLICT, TIMEOUT, UNREACHABLE, NOT_FOUND, GAVE_UP)
UNCOUNTED: Final = frozenset({CONFLICT, TIMEOUT, UNREACHABLE, NOT_FOUND})

# A connector in these states is left alone, FAILED tasks included: PAUSED/STOPPED are someone's
# intent, RESTARTING means a restart is already under way.
HANDS_OFF: Final = frozenset({PAUSED, STOPPED, RESTARTING})
# /health kinds during which restart requests would just queue behind a busy herder thread.
HOLD_HEALTH: Final = frozenset({"starting", "unhealthy", "kafka_unreachable", "timeout"})

ObjectKey = tuple[str, int | None]  # (connector, task id or None for the connector instance)


def backoff_delay(attempts: int, unit: float, cap: float) -> float:
    """Strimzi's schedule: after attempt n, wait min((n² + n) units, cap) seconds."""
    return min((attempts * attempts + attempts) * unit, cap)


@dataclass(frozen=True, slots=True)
class Target:
    """One connector's FAILED objects on this worker, as of the latest poll."""

    name: str
    connector_failed: bool  # the connector instance is FAILED on this worker
    tasks: tuple[int, ...]  # FAILED tasks on this worker
    failed_elsewhere: bool  # some FAILED object of this connector is on another worker

    def object_keys(self) -> list[ObjectKey]:
        head: list[ObjectKey] = [(self.name, None)] if self.connector_failed else []
        return head + [(self.name, task) for task in self.tasks]

    def describe(self) -> list[str]:
        head = ["connector"] if self.connector_failed else []
        return head + [f"task {task}" for task in self.tasks]


@dataclass(slots=True)
class Entry:
    """What the restarter remembers about one connector (in memory only)."""

    attempts: int = 0  # counted attempts since the last reset
    last_attempt: float | None = None  # monotonic time of the last counted attempt
    last_result: str | None = None
    last_result_at: float | None = None
    last_message: str = ""
    healthy_since: float | None = None  # no FAILED object here since (None while failing)
    gave_up: bool = False
    failed: tuple[str, ...] = ()  # what was FAILED here at the latest poll


def find_targets(tracked: Mapping[str, Tracked], rules: Rules) -> dict[str, Target]:
    """Connectors with FAILED objects on this worker that the restarter may touch."""
    mine = rules.identity.matches  # the worker identity even when SCOPE=cluster
    selected = rules.selector.selected
    targets: dict[str, Target] = {}
    for name, entry in tracked.items():
        status = entry.status
        conn = status.connector
        if conn.state in HANDS_OFF or not selected(name):
            continue
        conn_failed = conn.state == FAILED
        own_conn = conn_failed and mine(conn.worker_id)
        own_tasks = tuple(t.id for t in status.tasks if t.state == FAILED and mine(t.worker_id))
        if not own_conn and not own_tasks:
            continue
        elsewhere = (conn_failed and not own_conn) or any(
            t.state == FAILED and not mine(t.worker_id) for t in status.tasks
        )
        targets[name] = Target(name, own_conn, own_tasks, elsewhere)
    return targets


TargetFinder = Callable[[Mapping[str, Tracked], Rules], dict[str, Target]]


class Restarter:
    """Decides and sends restarts after each successful poll; read by /status, /ready, /metrics."""

    def __init__(
        self,
        client: ConnectClient,
        rules: Rules,
        settings: Settings,
        clock: Clock,
        *,
        finder: "TargetFinder | None" = None,
        subject: str = FAILED,
    ) -> None:
        # ``finder``: what to restart instead of FAILED objects, asked after every call (issue 14:
        # stalled sink tasks, with this same backoff, limits and visibility).
        self._finder = finder
        self._subject = subject  # what the targets are, in log lines and reasons
        self._client = client
        self._rules = rules
        self._clock = clock
        self.unit = settings.auto_restart_backoff_unit
        self.cap = settings.auto_restart_backoff_max
        self.max_attempts = settings.auto_restart_max
        self._budget = settings.timeout  # one round of requests never takes longer than a poll
        self._entries: dict[str, Entry] = {}
        self._targets: dict[str, Target] = {}
        self._targets_of: Mapping[str, Tracked] | None = None
        self._counts: Counter[tuple[str, str]] = Counter()
        self._plan_unsupported: str | None = None  # version on which KIP-745 answered 404/405
        self._version: str | None = None
        self._held: str | None = None
        self._notes: dict[ObjectKey, str] = {}
        self.notes_version = 0

    # --- the schedule -----------------------------------------------------------------------
    def delay(self, attempts: int) -> float:
        """Seconds to wait after attempt ``attempts`` before the next one."""
        return backoff_delay(attempts, self.unit, self.cap)

    def due(self, entry: Entry) -> float:
        """Monotonic time of the next attempt (-inf: now)."""
        if entry.last_attempt is None:
            return -math.inf
        return entry.last_attempt + self.delay(entry.attempts)

    # --- the poll loop's hook ---------------------------------------------------------------
    async def after_poll(self, state: PollState) -> None:
        """Called by the poll loop after a successful poll; sends the restarts that are due."""
        snapshot = state.snapshot
        if snapshot is None or state.failure is not None:
            return
        if self._finder is not None:
            self._targets = self._finder(state.tracked, self._rules)
        elif state.tracked is not self._targets_of:
            self._targets = find_targets(state.tracked, self._rules)
            self._targets_of = state.tracked
        self._version = state.server_info.version if state.server_info else None
        health = snapshot.health
        self._held = (
            f"Connect's /health is {health.kind}: restart requests would only queue behind its "
            "herder thread"
            if health.kind in HOLD_HEALTH
            else None
        )
        now = self._clock.monotonic()
        self._bookkeep(state.tracked, now)
        if self._held is None:
            await self._round(now)
        self._refresh_notes()

    def _bookkeep(self, tracked: Mapping[str, Tracked], now: float) -> None:
        """Create entries for new failures; forget connectors that were deleted or recovered."""
        for name in [name for name in self._entries if name not in tracked]:
            del self._entries[name]  # deleted: a connector re-created later starts afresh
        for key in [key for key in self._counts if key[0] not in tracked]:
            del self._counts[key]  # its restarts_total series ends with it (bounded memory)
        for name, target in self._targets.items():
            entry = self._entries.setdefault(name, Entry())
            entry.healthy_since = None
            entry.failed = tuple(target.describe())
        for name, entry in list(self._entries.items()):
            if name in self._targets:
                continue
            entry.failed = ()
            if entry.healthy_since is None:
                entry.healthy_since = now
            if now - entry.healthy_since > self.delay(entry.attempts):
                del self._entries[name]
                if entry.attempts or entry.gave_up:
                    logger.info(
                        "auto-restart: connector %s has had nothing %s on this worker for "
                        "%.0fs after %d restart attempt(s): attempt count reset",
                        safe(name),
                        self._subject,
                        now - entry.healthy_since,
                        entry.attempts,
                    )

    async def _round(self, now: float) -> None:
        """Send the due restarts, most overdue first, within one TIMEOUT for the whole round."""
        due = sorted(
            (self.due(entry), name)
            for name, entry in self._entries.items()
            if name in self._targets and not entry.gave_up and self.due(entry) <= now
        )
        current: str | None = None
        try:
            async with asyncio.timeout(self._budget):
                for _, name in due:
                    current = name
                    await self._attempt(self._targets[name], self._entries[name])
                    current = None
        except TimeoutError:
            if current is not None:
                self._record(
                    current,
                    self._entries[current],
                    TIMEOUT,
                    f"this round's {self._budget:g}s (TIMEOUT) ran out",
                )

    async def _attempt(self, target: Target, entry: Entry) -> None:
        name = target.name
        if self.max_attempts is not None and entry.attempts >= self.max_attempts:
            entry.gave_up = True
            self._counts[(name, GAVE_UP)] += 1
            entry.last_result, entry.last_result_at = GAVE_UP, self._clock.monotonic()
            entry.last_message = f"still {self._subject} after {entry.attempts} restart attempt(s)"
            logger.warning(
                "auto-restart: giving up on connector %s after %d restart attempts "
                "(AUTO_RESTART_MAX %d); %s on this worker: %s. It stays %s until restarted "
                "by hand; auto-restart resumes once it has been healthy for %.0fs",
                safe(name),
                entry.attempts,
                self.max_attempts,
                self._subject,
                ", ".join(target.describe()),
                self._subject,
                self.delay(entry.attempts),
            )
            return
        use_plan = (
            not target.failed_elsewhere
            and supports_restart_plan(self._version)
            and self._plan_unsupported != self._version
        )
        sent: list[str] = []
        try:
            if use_plan:
                try:
                    await self._client.restart_connector(name, with_failed_tasks=True)
                    sent.extend(target.describe())
                except ConnectHTTPError as exc:
                    if exc.status_code not in (404, 405) or isinstance(exc, ConnectStarting):
                        raise
                    # No KIP-745 after all (or the connector is gone): the per-object calls
                    # tell which; a 404 from them too means the connector was deleted.
                    await self._per_object(target, sent)
                    self._plan_unsupported = self._version
            else:
                await self._per_object(target, sent)
        except ConnectError as exc:
            result = _result_of(exc)
            if sent:  # part of it went through: that was an attempt
                message = f"restarted {', '.join(sent)}; then {exc.message}"
                self._record(name, entry, RESTARTED, message)
            else:
                self._record(name, entry, result, exc.message)
            return
        self._record(name, entry, RESTARTED, f"restarted {', '.join(sent)}")

    async def _per_object(self, target: Target, sent: list[str]) -> None:
        if target.connector_failed:
            await self._client.restart_connector(target.name, with_failed_tasks=False)
            sent.append("connector")
        for task in target.tasks:
            await self._client.restart_task(target.name, task)
            sent.append(f"task {task}")

    def _record(self, name: str, entry: Entry, result: str, message: str) -> None:
        """Count, log once, and move the schedule on for counted attempts."""
        now = self._clock.monotonic()
        self._counts[(name, result)] += 1
        repeated = entry.last_result == result
        entry.last_result, entry.last_result_at, entry.last_message = result, now, message[:500]
        if result in UNCOUNTED:
            level = logging.DEBUG if repeated else logging.INFO
            logger.log(
                level,
                "auto-restart: restart attempt %d of connector %s not made (%s: %s); "
                "retrying at the next poll",
                entry.attempts + 1,
                safe(name),
                result,
                safe(message),
            )
            return
        entry.attempts += 1
        entry.last_attempt = now
        logger.log(
            logging.INFO if result == RESTARTED else logging.WARNING,
            "auto-restart: restart attempt %d of connector %s%s: %s; next attempt (if still "
            "%s) not before %s",
            entry.attempts,
            safe(name),
            "" if result == RESTARTED else " failed",
            safe(message),
            self._subject,
            self._when(self.due(entry)),
        )

    # --- views --------------------------------------------------------------------------------
    def _when(self, moment: float) -> str:
        if moment == -math.inf:
            return "now"
        return iso(moment, self._clock.wall() - self._clock.monotonic())

    def _refresh_notes(self) -> None:
        notes: dict[ObjectKey, str] = {}
        for name, target in self._targets.items():
            entry = self._entries.get(name)
            if entry is None:
                continue
            note = self._note(entry)
            for key in target.object_keys():
                notes[key] = note
        if notes != self._notes:
            self._notes = notes
            self.notes_version += 1

    def _note(self, entry: Entry) -> str:
        """The tail of a FAILED object's readiness reason."""
        following = entry.attempts + 1
        if entry.gave_up:
            return f"; auto-restart gave up after {entry.attempts} attempt(s) (AUTO_RESTART_MAX)"
        if self._held is not None:
            return f"; restart attempt {following} held: {self._held}"
        if self.max_attempts is not None and entry.attempts >= self.max_attempts:
            return (
                f"; no restart attempt left (AUTO_RESTART_MAX {self.max_attempts}): auto-restart "
                f"gives up at {self._when(self.due(entry))} if still {self._subject}"
            )
        if entry.last_result in UNCOUNTED:
            return (
                f"; restart attempt {following} retried at the next poll "
                f"(last try: {entry.last_result})"
            )
        due = self.due(entry)
        if due == -math.inf:
            return f"; restart attempt {following} due now"
        note = f"; restart attempt {following} scheduled at {self._when(due)}"
        if entry.attempts:
            note += f" ({entry.attempts} made, last {entry.last_result})"
        return note

    def notes(self) -> Mapping[ObjectKey, str]:
        """Readiness-reason suffixes for the FAILED objects this sidecar restarts."""
        return self._notes

    def counts(self) -> Mapping[tuple[str, str], int]:
        """Cumulative ``(connector, result)`` -> count: ``connect_probe_restarts_total``."""
        return self._counts

    def status_view(self, now: float, wall_offset: float) -> dict[str, Any]:
        """The ``auto_restart`` section of /status."""

        def when(moment: float | None) -> str | None:
            return None if moment is None else iso(moment, wall_offset)

        def next_at(entry: Entry) -> str:
            due = self.due(entry)
            return "now" if due <= now else iso(due, wall_offset)

        connectors = []
        for name, entry in sorted(self._entries.items()):
            failing = name in self._targets
            connectors.append(
                {
                    "name": name,
                    "failed_here": list(entry.failed),
                    "attempts": entry.attempts,
                    "last_result": entry.last_result,
                    "last_result_at": when(entry.last_result_at),
                    "last_message": entry.last_message or None,
                    "next_attempt": next_at(entry)
                    if failing and not entry.gave_up and self._held is None
                    else None,
                    "gave_up": entry.gave_up,
                    "healthy_since": when(entry.healthy_since),
                    "reset_at": when(entry.healthy_since + self.delay(entry.attempts))
                    if entry.healthy_since is not None
                    else None,
                }
            )
        return {
            "enabled": True,
            "scope": "this worker's connector instances and tasks only, whatever SCOPE says",
            "backoff_unit_seconds": self.unit,
            "backoff_max_seconds": self.cap,
            "max_attempts": self.max_attempts,
            "restart_api": "KIP-745 (includeTasks/onlyFailed)"
            if supports_restart_plan(self._version) and self._plan_unsupported != self._version
            else "per connector instance and task",
            "held": self._held,
            "state": "in memory: a restarted sidecar starts counting afresh",
            "connectors": connectors,
        }


def _result_of(error: ConnectError) -> str:
    if isinstance(error, ConnectConflict):
        return CONFLICT
    if isinstance(error, ConnectTimeout):
        return TIMEOUT
    if isinstance(error, ConnectUnreachable):
        return UNREACHABLE
    if isinstance(error, ConnectHTTPError) and error.status_code == 404:
        return NOT_FOUND if not isinstance(error, ConnectStarting) else UNREACHABLE
    return ERROR
