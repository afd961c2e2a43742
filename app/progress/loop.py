"""The progress loop: every PROGRESS_INTERVAL, read Kafka for this worker's RUNNING sink tasks,
judge them, publish an immutable ``ProgressView``, and restart stuck tasks if asked.

It runs as its own asyncio task, beside the poll loop, and the blocking Kafka read runs in a
thread of its own: a slow or unreachable Kafka delays neither a probe nor a poll of Connect. A
read is bounded by its requests' deadline; should the thread still be busy when the next read is
due (a hung client), that read is skipped and the tasks read as ``unknown``.
"""

import asyncio
import concurrent.futures
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from app.clock import Clock
from app.connect.client import ConnectClient
from app.logs import safe
from app.pollstate import PollState
from app.progress.config import ProgressConfig
from app.progress.reading import KafkaUnavailable, Reader
from app.progress.rules import (
    FLAGGED,
    KafkaRead,
    ProgressJudge,
    TaskKey,
    TaskProgress,
    TaskRef,
)
from app.progress.targets import GroupIds, sink_tasks_here, task_refs
from app.restart import Restarter, Target, TargetFinder
from app.rules import Rules
from app.tracking import Tracked

logger = logging.getLogger("app.progress")

# While judging (tens of ms of pure Python at 1,000 tasks) the judge's thread hands the GIL over
# after this long instead of the interpreter's 5 ms, so a probe on the event loop waits at most
# this per step (bench/progress_cost.py measures /ready during reads).
JUDGE_SWITCH_INTERVAL = 0.0005


@dataclass(frozen=True, slots=True)
class ProgressView:
    """One read's outcome, replaced whole after each read (readers never see it half-built)."""

    version: int = 0
    verdicts: Mapping[TaskKey, TaskProgress] = field(default_factory=dict)
    kafka_up: bool | None = None  # None: not read yet
    failure: str | None = None
    last_read: float | None = None  # monotonic time of the latest read attempt
    last_duration: float | None = None
    groups: int = 0
    source_tasks: int = 0  # RUNNING source tasks here, whose progress is not judged
    # Kafka answered every read since ``reachable_since``, the latest at ``reachable_at``
    # (monotonic; None after a failed read): the second opinion of app.liveness.
    reachable_since: float | None = None
    reachable_at: float | None = None

    def flagged(self) -> list[TaskProgress]:
        """Stalled and not-consuming tasks, by connector and task."""
        return sorted(
            (v for v in self.verdicts.values() if v.state in FLAGGED),
            key=lambda v: (v.connector, v.task),
        )


class ProgressLoop:
    """Owns the judge, the group-id cache and the reader thread."""

    def __init__(
        self,
        config: ProgressConfig,
        rules: Rules,
        client: ConnectClient,
        reader: Reader,
        clock: Clock,
        state_source: Callable[[], PollState],
        *,
        restarter_factory: Callable[[TargetFinder], Restarter] | None = None,
        on_read: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self._rules = rules
        self._reader = reader
        self._clock = clock
        self._state_source = state_source
        self._groups = GroupIds(client)
        self._judge = ProgressJudge(
            allowed_lag=config.allowed_lag,
            window=config.windows.window,
            not_consuming_grace=config.not_consuming_grace,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kafka-progress"
        )
        # Judging 1,000 tasks takes tens of ms of pure Python: off the event loop too, in a
        # thread of its own so that a hung Kafka read never holds it up.
        self._judging = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="progress-judge"
        )
        self._pending: asyncio.Future[KafkaRead] | None = None
        # Beyond the requests' own deadline, how long the loop waits for the reader thread.
        self.read_slack = 5.0
        self.view = ProgressView()
        self._on_read = on_read  # e.g. the read-duration histogram
        self.restart_counts: Mapping[tuple[str, str], int] = {}  # a copy, for scrapes in a thread
        self.restarter = (
            restarter_factory(self.restart_targets) if restarter_factory is not None else None
        )

    async def run(self) -> None:
        """Read every PROGRESS_INTERVAL (start to start) until cancelled; never raises."""
        while True:
            started = self._clock.monotonic()
            try:
                await self.cycle()
            except Exception:  # a bug must not stop the loop (or the sidecar)
                logger.exception("progress read failed unexpectedly")
            delay = started + self.config.interval - self._clock.monotonic()
            await asyncio.sleep(max(0.0, delay))

    async def cycle(self) -> ProgressView:
        """One read: which tasks, which groups, Kafka, verdicts, then restarts if due."""
        state = self._state_source()
        if state.snapshot is None:
            return self.view  # Connect not read yet: nothing to judge
        now = self._clock.monotonic()
        tasks, sources = sink_tasks_here(state.tracked, self._rules, self.config)
        await self._groups.refresh({name for name, _, _ in tasks}, now)
        refs = task_refs(tasks, self._groups)
        groups = sorted({ref.group for ref in refs if ref.group is not None})
        read, failure = await self._read(groups)
        finished = self._clock.monotonic()
        verdicts = await asyncio.get_running_loop().run_in_executor(
            self._judging, self._judge_yielding, refs, read, finished, failure
        )
        before = self.view
        if not groups:  # nothing was asked of Kafka: no news either way
            reachable_since, reachable_at = before.reachable_since, before.reachable_at
        elif read is None:
            reachable_since = reachable_at = None
        else:
            reachable_since = before.reachable_since if before.reachable_at is not None else None
            reachable_since = reachable_since if reachable_since is not None else finished
            reachable_at = finished
        self._publish(
            ProgressView(
                version=self.view.version + 1,
                verdicts=verdicts,
                kafka_up=read is not None if groups else self.view.kafka_up,
                failure=failure,
                last_read=finished,
                last_duration=finished - now,
                groups=len(groups),
                source_tasks=sources,
                reachable_since=reachable_since,
                reachable_at=reachable_at,
            )
        )
        if self.restarter is not None and state.failure is None:
            await self.restarter.after_poll(state)
            self.restart_counts = dict(self.restarter.counts())
        return self.view

    def _judge_yielding(
        self,
        refs: Sequence[TaskRef],
        read: KafkaRead | None,
        now: float,
        failure: str | None,
    ) -> dict[TaskKey, TaskProgress]:
        """``ProgressJudge.judge`` with a short GIL switch interval (restored after)."""
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, JUDGE_SWITCH_INTERVAL))
        try:
            return self._judge.judge(refs, read, now, failure)
        finally:
            sys.setswitchinterval(previous)

    async def _read(self, groups: list[str]) -> tuple[KafkaRead | None, str | None]:
        if not groups:
            return KafkaRead({}, {}), None
        if self._pending is not None and not self._pending.done():
            return None, "the previous Kafka read has not finished (Kafka hangs?)"
        timeout = self.config.read_timeout
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(self._executor, self._reader.read, groups, timeout)
        started = self._clock.monotonic()
        try:
            # shield: a timeout here must not cancel the future the next read looks at.
            read = await asyncio.wait_for(asyncio.shield(self._pending), timeout + self.read_slack)
        except KafkaUnavailable as exc:
            return None, f"Kafka unreachable: {exc}"
        except TimeoutError:
            return None, f"Kafka read took longer than {timeout + self.read_slack:g}s"
        except Exception as exc:  # a client bug: a reason, not a crash (type only: no data)
            logger.error("Kafka read failed", exc_info=exc)
            return None, f"internal error reading Kafka ({type(exc).__name__})"
        finally:
            if self._on_read is not None:
                self._on_read(self._clock.monotonic() - started)
        return read, None

    def _publish(self, view: ProgressView) -> None:
        before = self.view
        self.view = view
        if before.kafka_up is not False and view.kafka_up is False:
            logger.warning("progress checks cannot read Kafka: %s", safe(view.failure))
        elif before.kafka_up is False and view.kafka_up:
            logger.info("progress checks read Kafka again")
        for key, verdict in view.verdicts.items():
            old = before.verdicts.get(key)
            old_state = old.state if old is not None else None
            if verdict.state == old_state:
                continue
            if verdict.state in FLAGGED:
                logger.warning(
                    "%s task %d %s: %s",
                    safe(verdict.connector),
                    verdict.task,
                    verdict.state,
                    safe(verdict.detail),
                )
            elif old_state in FLAGGED:
                logger.info(
                    "%s task %d is %s again (was %s)",
                    safe(verdict.connector),
                    verdict.task,
                    verdict.state,
                    old_state,
                )

    def restart_targets(self, tracked: Mapping[str, Tracked], rules: Rules) -> dict[str, Target]:
        """AUTO_RESTART_STALLED: this worker's stalled / not-consuming tasks, per connector.

        ``failed_elsewhere`` is set so the restarter always sends per-task restarts: KIP-745's
        ``onlyFailed`` would skip a task Connect calls RUNNING."""
        tasks: dict[str, list[int]] = {}
        for verdict in self.view.flagged():
            tasks.setdefault(verdict.connector, []).append(verdict.task)
        return {name: Target(name, False, tuple(sorted(ids)), True) for name, ids in tasks.items()}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._judging.shutdown(wait=False, cancel_futures=True)
