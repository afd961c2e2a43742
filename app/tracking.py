"""Since when each connector and task has been in its state, and what changed between polls.

Connect reports states but not since when, so we remember when we first saw each object in its
current ``(state, worker_id)``. Times are monotonic seconds; "since" means "observed since": an
object already UNASSIGNED when the sidecar starts gets a fresh grace period.
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from app.connect.models import ConnectorStatus


@dataclass(frozen=True, slots=True)
class Tracked:
    """A connector's latest status and, aligned with ``status.tasks``, since when."""

    status: ConnectorStatus
    connector_since: float
    task_since: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """One object's move between polls; ``old_state``/``new_state`` is None when (dis)appearing."""

    connector: str
    task: int | None
    old_state: str | None
    new_state: str | None
    old_worker: str | None
    new_worker: str | None
    trace: str | None


def _connector_changes(name: str, old: Tracked | None, new: ConnectorStatus) -> list[Change]:
    changes: list[Change] = []
    old_conn = old.status.connector if old is not None else None
    if old_conn is None or (old_conn.state, old_conn.worker_id) != (
        new.connector.state,
        new.connector.worker_id,
    ):
        changes.append(
            Change(
                name,
                None,
                old_conn.state if old_conn else None,
                new.connector.state,
                old_conn.worker_id if old_conn else None,
                new.connector.worker_id,
                new.connector.trace,
            )
        )
    old_tasks = {task.id: task for task in old.status.tasks} if old is not None else {}
    for task in new.tasks:
        before = old_tasks.pop(task.id, None)
        if before is None or (before.state, before.worker_id) != (task.state, task.worker_id):
            changes.append(
                Change(
                    name,
                    task.id,
                    before.state if before else None,
                    task.state,
                    before.worker_id if before else None,
                    task.worker_id,
                    task.trace,
                )
            )
    changes.extend(
        Change(name, gone.id, gone.state, None, gone.worker_id, None, None)
        for gone in old_tasks.values()
    )
    return changes


class StateTracker:
    """Holds ``Tracked`` per connector and when each required connector went missing."""

    def __init__(self, required: Iterable[str] = (), quiet_states: Iterable[str] = ()) -> None:
        self.objects: dict[str, Tracked] = {}
        self.missing_since: dict[str, float] = {}
        # False after an update where every connector was the same as before: then the caller
        # may keep publishing the previous view (and skip judging it again).
        self.changed = True
        self._required = tuple(required)
        # A new connector whose objects are all in these states is not news (10,000 connectors
        # appearing at start-up would otherwise mean 50,000 change records nobody logs).
        self._quiet = frozenset(quiet_states)

    def update(
        self,
        connectors: Mapping[str, ConnectorStatus],
        now: float,
        *,
        also_present: Collection[str] = (),
    ) -> list[Change]:
        """Fold one poll in; returns what changed (appearances included).

        ``also_present``: connectors listed with a malformed status; they exist, so a required
        one among them is not missing.
        """
        changes: list[Change] = []
        previous = self.objects
        current: dict[str, Tracked] = {}
        reused = 0
        for name, status in connectors.items():
            old = previous.get(name)
            if old is not None and old.status == status:
                current[name] = old
                reused += 1
                continue
            current[name] = self._track(old, status, now)
            if old is None and self._all_quiet(status):
                continue
            changes.extend(_connector_changes(name, old, status))
        for name, gone in previous.items():
            if name not in connectors:
                conn = gone.status.connector
                changes.append(Change(name, None, conn.state, None, conn.worker_id, None, None))
        self.changed = not (reused == len(previous) == len(current))
        if self.changed:
            self.objects = current
        for name in self._required:
            if name in connectors or name in also_present:
                self.missing_since.pop(name, None)
            else:
                self.missing_since.setdefault(name, now)
        return changes

    def _all_quiet(self, status: ConnectorStatus) -> bool:
        quiet = self._quiet
        return status.connector.state in quiet and all(task.state in quiet for task in status.tasks)

    @staticmethod
    def _track(old: Tracked | None, status: ConnectorStatus, now: float) -> Tracked:
        if old is None:
            return Tracked(status, now, (now,) * len(status.tasks))
        before = old.status
        conn_since = (
            old.connector_since
            if (before.connector.state, before.connector.worker_id)
            == (status.connector.state, status.connector.worker_id)
            else now
        )
        old_by_id = {
            task.id: (task.state, task.worker_id, since)
            for task, since in zip(before.tasks, old.task_since, strict=True)
        }
        task_since = []
        for task in status.tasks:
            seen = old_by_id.get(task.id)
            if seen is not None and (seen[0], seen[1]) == (task.state, task.worker_id):
                task_since.append(seen[2])
            else:
                task_since.append(now)
        return Tracked(status, conn_since, tuple(task_since))
