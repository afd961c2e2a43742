"""The background poll: one loop, one poll at a time, never raising, publishing a ``PollState``.

Each poll reads ``GET /connectors?expand=status`` and, on Connect ≥ 3.9, ``GET /health`` at the
same time (plus ``GET /`` for the version after (re)connecting). Probe handlers never wait for it:
they read the latest published state.
"""

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.clock import Clock
from app.connect.client import ConnectClient, ConnectError, ConnectHTTPError
from app.connect.models import ConnectorStatus, ServerInfo, Snapshot, Statuses, WorkerHealth
from app.liveness import counts_against_liveness, startup_rearmed
from app.logs import safe
from app.pollstate import PollFailure, PollState
from app.tracking import Change, StateTracker
from app.wire import ReasonCode

logger = logging.getLogger(__name__)

PollObserver = Callable[[PollState, list[Change]], None]
# After the poll loop itself failed: wait this long before running it again, doubling up to the
# cap while it keeps failing (a bug that fails on the same data must not spin the CPU).
CRASH_BACKOFF_FIRST = 1.0
CRASH_BACKOFF_MAX = 60.0


@dataclass(frozen=True, slots=True)
class LoopCrash:
    """The poll loop failed and was started again (see ``Poller.run``)."""

    count: int
    at: float  # monotonic
    error: str


class Poller:
    """Owns the poll loop and the object tracker; ``state`` is the latest ``PollState``."""

    def __init__(
        self,
        client: ConnectClient,
        clock: Clock,
        *,
        poll_interval: float,
        health_recheck_interval: float,
        stuck_after: float = 60.0,
        required: tuple[str, ...] = (),
        quiet_states: tuple[str, ...] = (),
        observers: Sequence[PollObserver] = (),
        after_poll: Callable[[PollState], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock
        self._interval = poll_interval
        self._health_recheck = health_recheck_interval
        self._stuck_after = stuck_after  # /healthz: no finished poll for this long = stuck
        self._tracker = StateTracker(required, quiet_states)
        self._observers = tuple(observers)  # called in order after each poll, each guarded
        self._after_poll = after_poll  # e.g. auto-restart: runs in this loop, never in a probe
        self._health_unsupported_until: float | None = None
        # Digest of the last expand=status answer folded into the published state.
        self._statuses_digest: bytes | None = None
        self.state = PollState(started=clock.monotonic())
        self.last_loop_activity = self.state.started
        self.crash: LoopCrash | None = None
        self._failing_observers: set[int] = set()

    async def run(self) -> None:
        """Poll every ``poll_interval`` (start to start) until cancelled; polls never overlap.

        Supervised: nothing a poll does should raise, but if the loop fails anyway it is logged
        with its traceback and started again after a backoff, rather than ending silently (the
        sidecar stays up: its /ready turns stale and /healthz names the crash).
        """
        backoff = CRASH_BACKOFF_FIRST
        while True:
            polls_before = self.state.polls
            try:
                await self._loop()
            except Exception as exc:
                if self.state.polls > polls_before + 1:  # it had worked again meanwhile
                    backoff = CRASH_BACKOFF_FIRST
                count = self.crash.count + 1 if self.crash is not None else 1
                self.crash = LoopCrash(count, self._clock.monotonic(), _describe(exc))
                logger.exception(
                    "the poll loop failed (%d so far); running it again in %gs", count, backoff
                )
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, CRASH_BACKOFF_MAX)

    def loop_health(self, running: bool) -> tuple[bool, str]:
        """/healthz: the loop's task is ``running`` and has finished a poll recently."""
        if not running:
            return False, "the poll loop has stopped"
        now = self._clock.monotonic()
        crashed = ""
        if self.crash is not None:
            crash = self.crash
            crashed = (
                f"; it failed {crash.count} time(s) and was restarted, last {now - crash.at:.0f}s "
                f"ago: {crash.error}"
            )
        quiet = now - self.last_loop_activity
        if quiet > self._stuck_after:
            return False, f"the poll loop has not completed a poll for {quiet:.0f}s{crashed}"
        return True, f"the poll loop is running ({self.state.polls} polls){crashed}"

    async def _loop(self) -> None:
        while True:
            started = self._clock.monotonic()
            await self.cycle()
            self.last_loop_activity = self._clock.monotonic()
            await self._clock.sleep(max(0.0, started + self._interval - self._clock.monotonic()))

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

    def _known_status(self, name: str) -> ConnectorStatus | None:
        tracked = self._tracker.objects.get(name)
        return tracked.status if tracked is not None else None

    def _health_due(self, now: float) -> bool:
        return self._health_unsupported_until is None or now >= self._health_unsupported_until

    async def poll_once(self) -> PollState:
        """One poll; records success or failure and returns the new state. Never raises."""
        started = self._clock.monotonic()
        previous = self.state
        check_health = self._health_due(started)
        want_info = previous.server_info is None or previous.failure is not None
        statuses_task = asyncio.ensure_future(
            self._client.fetch_statuses_if_changed(self._statuses_digest, self._known_status)
        )
        health_task = asyncio.ensure_future(
            self._client.fetch_health() if check_health else _unchecked()
        )
        info_task = asyncio.ensure_future(
            self._client.fetch_server_info() if want_info else _no_info()
        )
        tasks = (statuses_task, health_task, info_task)
        errors = await _gather_cutting_short_on_transport_failure(tasks)
        if errors:
            # The connector listing's failure first: the same cause reads the same way every time.
            return self._record_failure(started, _failure_from(errors))
        statuses, health, info = (task.result() for task in tasks)
        assert isinstance(statuses, tuple)
        assert isinstance(health, WorkerHealth)
        assert info is None or isinstance(info, ServerInfo)
        # Decoding a large answer just held the loop; let queued probes through before tracking.
        await asyncio.sleep(0)
        return self._record_success(started, statuses, health, info or previous.server_info)

    def _record_failure(self, started: float, failure: PollFailure) -> PollState:
        now = self._clock.monotonic()
        previous = self.state
        trouble_since = previous.live_trouble_since
        connect_started = previous.connect_started
        rearmed = previous.startup_rearmed
        if startup_rearmed(previous, failure):  # app.liveness: Connect (re)started
            connect_started = started
            rearmed = True
            if previous.last_success is not None:
                logger.info("Connect stopped answering; STARTUP_GRACE applies again from now")
        if failure.live:
            trouble_since = started if trouble_since is None else trouble_since
        else:
            trouble_since = None  # Connect answered: restarting it would not help
            rearmed = False
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
            startup_rearmed=rearmed,
        )
        if previous.failure is None or previous.failure.code != failure.code:
            logger.warning("poll failed: %s", safe(failure.message))  # may quote Connect
        return self._publish(state, [])

    def _record_success(
        self,
        started: float,
        fetched: tuple[bytes | None, Statuses | None],
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
            changes = self._tracker.update(
                statuses.connectors, now, also_present=statuses.malformed.keys()
            )
            self._log_malformed(previous.snapshot, statuses)
            snapshot = Snapshot(
                len(statuses.connectors) + len(statuses.malformed),
                health,
                statuses.malformed,
                statuses.legacy_api,
            )
            del statuses  # the tracker keeps what lasts; the decoded duplicates die here
            if not self._tracker.changed and snapshot == previous.snapshot:
                # A different answer that says the same (a trace's later lines, key order):
                # publish the same view, so nothing is judged or rendered again.
                snapshot = previous.snapshot
        self._statuses_digest = digest

        troubled = health.kind in ("unhealthy", "timeout")
        trouble_since = (previous.live_trouble_since or started) if troubled else None
        # From when the sidecar saw it (the poll's end): /health takes up to its 10 s budget to
        # say so, and LIVE_GRACE for a zombie must count from evidence the sidecar has.
        lost = health.kind == "kafka_unreachable"
        kafka_lost_since = (previous.kafka_lost_since or now) if lost else None
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
            kafka_lost_since=kafka_lost_since,
            startup_rearmed=previous.startup_rearmed if troubled else False,
            server_info=info,
        )
        return self._publish(state, changes)

    @staticmethod
    def _log_malformed(previous: Snapshot | None, statuses: Statuses) -> None:
        """One line when the set of malformed entries changes, naming the first few."""
        before = previous.malformed.keys() if previous is not None else set()
        new = [name for name in statuses.malformed if name not in before]
        if not new:
            return
        first = new[0]
        logger.warning(
            "%d connector status entr%s could not be decoded (judged as malformed, the others "
            "normally), e.g. %s: %s",
            len(new),
            "y" if len(new) == 1 else "ies",
            safe(first),
            safe(statuses.malformed[first].error),
        )

    def _publish(self, state: PollState, changes: list[Change]) -> PollState:
        self.state = state
        for index, observer in enumerate(self._observers):
            try:
                observer(state, changes)
            except Exception:  # one observer's bug must not stop the others or the loop
                if index not in self._failing_observers:  # once per streak, with the traceback
                    self._failing_observers.add(index)
                    logger.exception("a poll observer failed: %s", _name_of(observer))
            else:
                if index in self._failing_observers:
                    self._failing_observers.discard(index)
                    logger.info("the poll observer %s works again", _name_of(observer))
        return state


def _describe(exc: BaseException) -> str:
    """Type and message, cut short (for /healthz; the log line has the traceback)."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def _name_of(observer: PollObserver) -> str:
    return getattr(observer, "__qualname__", None) or type(observer).__name__


async def _gather_cutting_short_on_transport_failure(
    tasks: tuple["asyncio.Future[Any]", ...],
) -> tuple[BaseException, ...]:
    """Wait for the poll's requests; their errors, the first task's first.

    A request that fails at the transport (refused, reset, timed out, a bad body) cuts the
    others short: the poll has failed and they would only hold the loop. A clean HTTP answer
    (a 401, a 500) does not: cancelling the others would cut their connections and cost a new
    connection pool at every poll (see ConnectClient._renew_if_interrupted).
    """
    pending: set[asyncio.Future[Any]] = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        if any(not isinstance(t.exception(), ConnectHTTPError) for t in failed):
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            break
    return tuple(
        error
        for task in tasks
        if task.done() and not task.cancelled() and (error := task.exception()) is not None
    )


async def _unchecked() -> WorkerHealth:
    return WorkerHealth("unchecked")


async def _no_info() -> ServerInfo | None:
    return None


def _failure_from(errors: tuple[BaseException, ...]) -> PollFailure:
    """The most telling failure of a poll's requests: Connect's own errors first."""
    for error in errors:
        if isinstance(error, ConnectError):
            status = error.status_code if isinstance(error, ConnectHTTPError) else None
            return PollFailure(
                error.code, error.message, counts_against_liveness(error.code, status)
            )
    # A bug must not stop the loop; it becomes a reason instead (type only: no data, no secrets).
    logger.error("poll failed unexpectedly", exc_info=errors[0])
    return PollFailure(
        ReasonCode.INTERNAL_ERROR,
        f"internal error while polling: {type(errors[0]).__name__}",
        False,
    )


__all__ = ["Poller", "Snapshot"]
