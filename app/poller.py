"""The background poll: one loop, one poll at a time, never raising, publishing a ``PollState``.

Each poll reads ``GET /connectors?expand=status`` and, on Connect ≥ 3.9, ``GET /health`` at the
same time (plus ``GET /`` for the version after (re)connecting). Probe handlers never wait for it:
they read the latest published state.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from app.clock import Clock
from app.connect import ConnectClient, ConnectError, StatusesResult, snapshot_from
from app.logs import safe
from app.models import ServerInfo, Snapshot, WorkerHealth
from app.pollstate import PollFailure, PollState
from app.tracking import Change, StateTracker

logger = logging.getLogger(__name__)


class Poller:
    """Owns the poll loop and the object tracker; ``state`` is the latest ``PollState``."""

    def __init__(
        self,
        client: ConnectClient,
        clock: Clock,
        *,
        poll_interval: float,
        health_recheck_interval: float,
        required: tuple[str, ...] = (),
        quiet_states: tuple[str, ...] = (),
        on_poll: Callable[[PollState, list[Change]], None] | None = None,
        after_poll: Callable[[PollState], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._interval = poll_interval
        self._health_recheck = health_recheck_interval
        self._tracker = StateTracker(required, quiet_states)
        self._on_poll = on_poll
        self._after_poll = after_poll  # e.g. auto-restart: runs in this loop, never in a probe
        self._health_unsupported_until: float | None = None
        # Digest of the last expand=status answer folded into the published state.
        self._statuses_digest: bytes | None = None
        self.state = PollState(started=clock.monotonic())
        self.last_loop_activity = self.state.started

    async def run(self) -> None:
        """Poll every ``poll_interval`` (start to start) until cancelled; polls never overlap."""
        while True:
            started = self._clock.monotonic()
            await self.cycle()
            self.last_loop_activity = self._clock.monotonic()
            await asyncio.sleep(max(0.0, started + self._interval - self._clock.monotonic()))

    async def cycle(self) -> PollState:
        """One loop iteration: a poll, then (after a successful one) the ``after_poll`` actions.

        ``poll_once`` alone (``connect-probe check``) only reads. The actions bound their own time
        and never raise into the loop; the loop counts as active before and after them.
        """
        state = await self.poll_once()
        if self._after_poll is not None and state.failure is None and state.snapshot is not None:
            self.last_loop_activity = self._clock.monotonic()
            try:
                await self._after_poll(state)
            except Exception:  # a bug must not stop the poll loop
                logger.exception("after-poll action failed")
        return state

    def _health_due(self, now: float) -> bool:
        return self._health_unsupported_until is None or now >= self._health_unsupported_until

    async def poll_once(self) -> PollState:
        """One poll; records success or failure and returns the new state. Never raises."""
        started = self._clock.monotonic()
        previous = self.state
        check_health = self._health_due(started)
        want_info = previous.server_info is None or previous.failure is not None
        try:
            async with asyncio.TaskGroup() as group:
                statuses_task = group.create_task(
                    self._client.fetch_statuses_if_changed(self._statuses_digest)
                )
                health_task = (
                    group.create_task(self._client.fetch_health()) if check_health else None
                )
                info_task = (
                    group.create_task(self._client.fetch_server_info()) if want_info else None
                )
        except ExceptionGroup as errors:  # the first failure cancels the other requests
            # The connector listing's failure first: the same cause reads the same way every time.
            listing = (
                statuses_task.exception()
                if statuses_task.done() and not statuses_task.cancelled()
                else None
            )
            first = (listing,) if listing is not None else ()
            failure = _failure_from(first + tuple(e for e in errors.exceptions if e is not listing))
            return self._record_failure(started, failure)
        statuses = statuses_task.result()
        health = health_task.result() if health_task is not None else WorkerHealth("unchecked")
        info = info_task.result() if info_task is not None else None
        # Decoding a large answer just held the loop; let queued probes through before tracking.
        await asyncio.sleep(0)
        return self._record_success(started, statuses, health, info or previous.server_info)

    def _record_failure(self, started: float, failure: PollFailure) -> PollState:
        now = self._clock.monotonic()
        previous = self.state
        trouble_since = previous.live_trouble_since
        connect_started = previous.connect_started
        went_away = failure.code == "connect_unreachable" and (
            previous.failure is None or previous.failure.code != "connect_unreachable"
        )
        if went_away and previous.polls > 0:
            connect_started = started
            if previous.last_success is not None:
                logger.info("Connect stopped answering; STARTUP_GRACE applies again from now")
        if failure.live:
            trouble_since = started if trouble_since is None else trouble_since
        else:
            trouble_since = None  # Connect answered: restarting it would not help
        state = dataclasses.replace(
            previous,
            generation=previous.generation + 1,
            polls=previous.polls + 1,
            last_attempt=now,
            last_duration=now - started,
            failure=failure,
            live_trouble_since=trouble_since,
            live_trouble=failure.message if failure.live else None,
            connect_started=connect_started,
        )
        if previous.failure is None or previous.failure.code != failure.code:
            logger.warning("poll failed: %s", safe(failure.message))  # may quote Connect
        return self._publish(state, [])

    def _record_success(
        self,
        started: float,
        fetched: tuple[bytes | None, StatusesResult | None],
        health: WorkerHealth,
        info: ServerInfo | None,
    ) -> PollState:
        now = self._clock.monotonic()
        previous = self.state
        if health.kind == "unsupported":
            self._health_unsupported_until = now + self._health_recheck
        elif health.kind != "unchecked":
            self._health_unsupported_until = None
        if health.kind == "unchecked":
            health = WorkerHealth("unsupported", "GET /health is not supported (Connect < 3.9)")

        digest, statuses = fetched
        if statuses is None and previous.snapshot is not None:
            # Byte-for-byte the same answer as the published one: nothing to parse or track.
            snapshot = previous.snapshot
            if snapshot.health != health:
                snapshot = dataclasses.replace(snapshot, health=health)
            changes: list[Change] = []
        else:
            assert statuses is not None
            connectors, legacy, missing = statuses
            changes = self._tracker.update(connectors, now)
            # Publish the tracker's structs: where a connector did not change they are the old
            # ones, so the freshly decoded duplicates die with this poll (half the memory).
            current = {name: entry.status for name, entry in self._tracker.objects.items()}
            snapshot = snapshot_from((current, legacy, missing), health)
        self._statuses_digest = digest

        troubled = health.kind in ("unhealthy", "timeout")
        trouble_since = (previous.live_trouble_since or started) if troubled else None
        if previous.failure is not None:
            logger.info("poll succeeded again after: %s", safe(previous.failure.message))
        same = snapshot is previous.snapshot and previous.failure is None
        state = dataclasses.replace(
            previous,
            generation=previous.generation + (0 if same else 1),
            snapshot=snapshot,
            tracked=self._tracker.objects,
            missing_since=dict(self._tracker.missing_since),
            polls=previous.polls + 1,
            last_attempt=now,
            last_duration=now - started,
            last_success=now,
            failure=None,
            live_trouble_since=trouble_since,
            live_trouble=health.message if troubled else None,
            server_info=info,
        )
        return self._publish(state, changes)

    def _publish(self, state: PollState, changes: list[Change]) -> PollState:
        self.state = state
        if self._on_poll is not None:
            self._on_poll(state, changes)
        return state


def _failure_from(errors: tuple[BaseException, ...]) -> PollFailure:
    """The most telling failure of a poll's requests: Connect's own errors first."""
    for error in errors:
        if isinstance(error, ConnectError):
            return PollFailure(error.code, error.message, error.counts_against_liveness)
    # A bug must not stop the loop; it becomes a reason instead (type only: no data, no secrets).
    logger.error("poll failed unexpectedly", exc_info=errors[0])
    return PollFailure(
        "internal_error", f"internal error while polling: {type(errors[0]).__name__}", False
    )


__all__ = ["Poller", "Snapshot"]
