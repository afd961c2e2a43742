"""The rules verdicts are judged by, and which connectors and tasks they apply to (scope).

Built from plain values, so a test can make one in a line; ``Rules.from_settings`` adapts the
configuration. The census below is the hot loop of a poll at 10,000 connectors.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Self

from app.connect.models import MalformedStatus
from app.identity import Identity
from app.selection import ConnectorSelector
from app.settings import MaxUnhealthy, Settings
from app.states import TRANSIENT_STATES
from app.tracking import Tracked


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
    """What shapes verdicts, from plain values (``from_settings`` adapts the configuration)."""

    def __init__(
        self,
        identity: Identity,
        *,
        scope: str = "worker",
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        ready_states: Iterable[str] = ("RUNNING",),
        live_fail_states: Iterable[str] = (),
        transient_grace: float = 60.0,
        live_grace: float = 60.0,
        startup_grace: float = 300.0,
        max_age: float = 30.0,
        max_unhealthy: MaxUnhealthy | str = "0",
        required: Iterable[str] = (),
    ) -> None:
        self.identity = identity
        self.scope = scope
        self.selector = ConnectorSelector(include, exclude)
        self.ready_states = frozenset(ready_states)
        self.transient_states = TRANSIENT_STATES - self.ready_states
        self.live_fail_states = frozenset(live_fail_states)
        self.transient_grace = transient_grace
        self.live_grace = live_grace
        self.startup_grace = startup_grace
        self.max_age = max_age
        self.max_unhealthy = (
            max_unhealthy
            if isinstance(max_unhealthy, MaxUnhealthy)
            else MaxUnhealthy(max_unhealthy)
        )
        self.required = tuple(required)
        self._scope_memo: dict[str, bool] = {}

    @classmethod
    def from_settings(cls, settings: Settings, identity: Identity) -> Self:
        return cls(
            identity,
            scope=settings.scope,
            include=settings.include,
            exclude=settings.exclude,
            ready_states=settings.ready_states,
            live_fail_states=settings.live_fail_states,
            transient_grace=settings.transient_grace,
            live_grace=settings.live_grace,
            startup_grace=settings.startup_grace,
            max_age=settings.max_age,
            max_unhealthy=settings.max_unhealthy,
            required=settings.required_connectors,
        )

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
