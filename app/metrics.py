"""Prometheus metrics on a private registry, computed at scrape time from the latest poll.

A scrape never calls Connect: ``StateSeries`` reads the same ``PollState`` the probes read, and
the ready/live gauges are the cached probe answers. Only what the latest state cannot tell —
how long each poll took and why polls failed — is recorded as polls happen, by
``Metrics.observe_poll`` (a poll observer). Each scrape takes a ``StateView`` on the event loop and
formats it in a worker thread through a ``Scrape`` collector made for that scrape alone: tens of
thousands of series take a good part of a second, which must not delay the probes.

Choices worth knowing when writing alerts:

- Connector/task series cover the objects the probes judge (SCOPE, INCLUDE, EXCLUDE) unless
  METRICS_SCOPE=cluster. With SCOPE=worker each series comes from exactly one sidecar — the one
  next to the worker running that connector instance or task — so tasks of one connector spread
  over several workers never produce the same series twice.
- They come from the last successful poll while it is at most MAX_AGE old, then disappear: one
  failed poll does not reset a ``for: 5m`` alert, and a long outage does not export stale states
  (``connect_probe_connect_up`` says so instead).
- ``connect_probe_worker_healthy`` is absent, not NaN, for workers without ``GET /health``
  (Connect < 3.9): ``== 0`` alerts stay silent there, and dashboards show "no data".
"""

import asyncio
import gzip
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric

from app import __version__
from app.clock import Clock
from app.connect.client import (
    ConnectAuthError,
    ConnectBadResponse,
    ConnectHTTPError,
    ConnectStarting,
    ConnectTimeout,
    ConnectUnreachable,
)
from app.core import Core
from app.pollstate import PollState
from app.rules import Rules
from app.settings import Settings
from app.states import KNOWN_STATES
from app.tracking import Change, Tracked
from app.wire import ReasonCode

# Every known state is always exported (0 or 1), in a stable order.
STATE_ORDER: tuple[str, ...] = tuple(sorted(KNOWN_STATES))

# Polls take milliseconds when healthy and up to TIMEOUT (default 11 s) when Connect hangs.
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)

# Exported at 0 from the start, so rate() and increase() see the first failure of each kind.
POLL_ERROR_REASONS: tuple[str, ...] = (
    ConnectUnreachable.code,
    ConnectTimeout.code,
    ConnectHTTPError.code,
    ConnectAuthError.code,
    ConnectStarting.code,
    ConnectBadResponse.code,
    ReasonCode.INTERNAL_ERROR,
)

# Health kinds that are an answer from /health (the others mean "not asked" or "no /health").
_HEALTH_ANSWERS = frozenset({"healthy", "starting", "unhealthy", "kafka_unreachable", "timeout"})

CONNECTOR_STATE = "kafka_connect_connector_state"
TASK_STATE = "kafka_connect_task_state"
CONNECTORS = "kafka_connect_connectors"
TASKS = "kafka_connect_tasks"
READY = "connect_probe_ready"
LIVE = "connect_probe_live"
CONNECT_UP = "connect_probe_connect_up"
WORKER_HEALTHY = "connect_probe_worker_healthy"
LAST_SUCCESS = "connect_probe_last_success_timestamp_seconds"
BUILD = "connect_probe_build"  # exported as connect_probe_build_info
POLL_DURATION = "connect_probe_poll_duration_seconds"
POLL_ERRORS = "connect_probe_poll_errors"  # exported as connect_probe_poll_errors_total
RESTARTS = "connect_probe_restarts"  # exported as connect_probe_restarts_total (AUTO_RESTART)

_CONNECTOR_LABELS = ("connector", "state", "worker_id")
_TASK_LABELS = ("connector", "task", "state", "worker_id")


def _gauge(name: str, documentation: str, value: float | bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


@dataclass(frozen=True, slots=True)
class StateView:
    """What one scrape reports, taken on the event loop (the answer cache is not thread-safe)."""

    state: PollState
    ready: bool
    live: bool
    now: float
    wall_offset: float
    rules: Rules
    restarts: Mapping[tuple[str, str], int] | None = None  # AUTO_RESTART on: (connector, result)


class StateSeries:
    """The series derived from the latest ``PollState``, built afresh for each scrape."""

    def __init__(self, settings: Settings, clock: Clock, core_source: Callable[[], Core | None]):
        self._settings = settings
        self._clock = clock
        self._core_source = core_source
        self._everything = settings.metrics_scope == "cluster"
        self._rules: tuple[Core, Rules] | None = None

    def capture(self) -> StateView | None:
        """The state and cached answers now; None before the lifespan started the core."""
        core = self._core_source()
        if core is None:
            return None
        if self._rules is None or self._rules[0] is not core:
            # Its own Rules (scope memo) for this core: the view is read in another thread.
            self._rules = (core, Rules.from_settings(self._settings, core.answers.identity))
        now = self._clock.monotonic()
        answers = core.answers
        return StateView(
            state=answers.state,
            ready=answers.answer("ready").verdict.ok,
            live=answers.answer("live").verdict.ok,
            now=now,
            wall_offset=self._clock.wall() - now,
            rules=self._rules[1],
            restarts=dict(core.restarter.counts()) if core.restarter is not None else None,
        )

    def collect(self, view: StateView | None) -> Iterator[Metric]:
        """The series of ``view`` (captured on the event loop)."""
        state = view.state if view is not None else None
        connect_version = ""
        if state is not None and state.server_info is not None:
            connect_version = state.server_info.version
        yield InfoMetricFamily(
            BUILD,
            "Version of the sidecar and of the Kafka Connect worker it watches ('' until known).",
            value={"version": __version__, "connect_version": connect_version},
        )
        if view is None or state is None:
            return  # not started: nothing is known yet
        yield _gauge(READY, "1 when /ready answers 200.", view.ready)
        yield _gauge(LIVE, "1 when /live answers 200.", view.live)
        if view.restarts is not None:
            restarts = CounterMetricFamily(
                RESTARTS,
                "Auto-restart attempts per connector by result (restarted, error, conflict, "
                "timeout, unreachable, not_found; gave_up once per give-up).",
                labels=("connector", "result"),
            )
            for (connector, result), count in sorted(view.restarts.items()):
                restarts.add_metric((connector, result), float(count))
            yield restarts
        yield _gauge(
            CONNECT_UP,
            "1 when the last poll got a usable answer from Connect "
            "(see connect_probe_poll_errors_total for why not).",
            state.polls > 0 and state.failure is None,
        )
        if state.last_success is not None:
            yield _gauge(
                LAST_SUCCESS,
                "Wall-clock time of the last successful poll, seconds since the epoch.",
                state.last_success + view.wall_offset,
            )
        if (
            state.snapshot is None
            or state.last_success is None
            or view.now - state.last_success > self._settings.max_age
        ):
            return  # no fresh data: no object series rather than stale ones
        health = state.snapshot.health.kind
        if health in _HEALTH_ANSWERS:
            yield _gauge(
                WORKER_HEALTHY,
                "1 when Connect's GET /health says healthy; absent before Connect 3.9.",
                health == "healthy",
            )
        yield from self._objects(state.tracked, view.rules)

    def _objects(self, tracked: Mapping[str, Tracked], rules: Rules) -> Iterator[Metric]:
        """State sets per connector instance and task, and counts per state, for those in scope."""
        connector_state = GaugeMetricFamily(
            CONNECTOR_STATE,
            "Connector instance state: 1 for the current state, 0 for the others.",
            labels=_CONNECTOR_LABELS,
        )
        task_state = GaugeMetricFamily(
            TASK_STATE,
            "Task state: 1 for the current state, 0 for the others.",
            labels=_TASK_LABELS,
        )
        connectors = dict.fromkeys(STATE_ORDER, 0)
        tasks = dict.fromkeys(STATE_ORDER, 0)
        everything = self._everything
        selected, in_scope = rules.selector.selected, rules.in_scope
        for name, entry in tracked.items():
            if not (everything or selected(name)):
                continue
            conn = entry.status.connector
            if everything or in_scope(conn.worker_id):
                _state_set(connector_state, (name,), conn.state, conn.worker_id)
                connectors[conn.state] = connectors.get(conn.state, 0) + 1
            seen: set[int] = set()
            for task in entry.status.tasks:
                if task.id in seen or not (everything or in_scope(task.worker_id)):
                    continue
                seen.add(task.id)  # a repeated task id would be a duplicate series
                _state_set(task_state, (name, str(task.id)), task.state, task.worker_id)
                tasks[task.state] = tasks.get(task.state, 0) + 1
        yield connector_state
        yield task_state
        yield _counts(CONNECTORS, "Connector instances in scope, per state.", connectors)
        yield _counts(TASKS, "Tasks in scope, per state.", tasks)


def _state_set(
    family: GaugeMetricFamily, key: tuple[str, ...], current: str, worker_id: str
) -> None:
    """Every known state, 1 for ``current``; an unknown state from Connect is added as 1."""
    for state in STATE_ORDER:
        family.add_metric((*key, state, worker_id), 1.0 if state == current else 0.0)
    if current not in KNOWN_STATES:
        family.add_metric((*key, current, worker_id), 1.0)


def _counts(name: str, documentation: str, counts: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=("state",))
    for state, count in counts.items():
        family.add_metric((state,), float(count))
    return family


class Metrics:
    """The sidecar's private registry: the scrape-time collector plus per-poll observations."""

    def __init__(
        self, settings: Settings, clock: Clock, core_source: Callable[[], "Core | None"]
    ) -> None:
        # Only what is recorded as polls happen lives in the registry; the state series are
        # computed per scrape (see ``Scrape``).
        self.registry = CollectorRegistry()
        self._state = StateSeries(settings, clock, core_source)
        self._durations = Histogram(
            POLL_DURATION,
            "How long each poll of Connect took (all its requests), successful or not.",
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self._errors = Counter(
            POLL_ERRORS,
            "Failed polls by reason (the code the probes report).",
            ("reason",),
            registry=self.registry,
        )
        for reason in POLL_ERROR_REASONS:
            self._errors.labels(reason)
        self._one_at_a_time = asyncio.Lock()

    def observe_poll(self, state: PollState, changes: Sequence[Change]) -> None:
        """Poller hook, called once per poll: its duration and, if it failed, why."""
        if state.last_duration is not None:
            self._durations.observe(state.last_duration)
        if state.failure is not None:
            self._errors.labels(state.failure.code).inc()

    async def render(self, gzipped: bool = False) -> bytes:
        """The text exposition, formatted in a thread: thousands of series take a good part of a
        second, which on the event loop would delay probes past the kubelet's timeout."""
        async with self._one_at_a_time:  # concurrent scrapes would only fight for the GIL
            view = self._state.capture()
            return await asyncio.to_thread(self._render, view, gzipped)

    def _render(self, view: StateView | None, gzipped: bool) -> bytes:
        body = generate_latest(Scrape(self._state, view, self.registry))
        return gzip.compress(body, compresslevel=1) if gzipped else body


class Scrape:
    """One scrape's collector: the series of a view taken on the event loop, then the
    registry's own (``generate_latest`` takes anything with ``collect``)."""

    def __init__(
        self, series: StateSeries, view: StateView | None, registry: CollectorRegistry
    ) -> None:
        self._series = series
        self._view = view
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._series.collect(self._view)
        yield from self._registry.collect()
