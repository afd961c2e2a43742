"""The application factory and its lifespan. No module-level app; nothing happens at import."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from app import __version__
from app.api import build_router
from app.clock import Clock, SystemClock
from app.connect import ConnectClient, build_http_client
from app.fastpath import ProbeFastPath
from app.identity import Identity, detect_identity, explicit_identity, local_host_names
from app.memory import trimmer
from app.metrics import Metrics
from app.monitor import Monitor
from app.poller import Poller
from app.pollstate import PollState
from app.restart import Restarter
from app.settings import Settings
from app.tracking import Change
from app.verdict import Rules

logger = logging.getLogger(__name__)

# Host-name look-ups (FQDN) can hang on a broken resolver; identity detection must not.
IDENTITY_LOOKUP_TIMEOUT = 3.0


@dataclass
class Runtime:
    """What the lifespan builds and the routes read."""

    monitor: Monitor | None = None
    poller: Poller | None = None
    task: asyncio.Task[None] | None = None


async def resolve_identity(settings: Settings) -> Identity:
    """WORKER_ID if set, otherwise every id this worker could be advertising."""
    if settings.worker_id is not None:
        return explicit_identity(settings.worker_id)
    try:
        async with asyncio.timeout(IDENTITY_LOOKUP_TIMEOUT):
            names = await asyncio.to_thread(local_host_names)
    except TimeoutError:
        logger.warning("host name look-up timed out; worker-id candidates use POD_IP and loopback")
        names = []
    return detect_identity(settings.connect_port(), settings.pod_ip, names)


PollObserver = Callable[[PollState, list[Change]], None]


def build_monitor_and_poller(
    settings: Settings,
    client: ConnectClient,
    identity: Identity,
    clock: Clock,
    *,
    observers: Sequence[PollObserver] = (),
) -> tuple[Monitor, Poller]:
    """Wire the rules, monitor and poller for one sidecar; ``observers`` see each poll after it."""
    rules = Rules(settings, identity)
    # AUTO_RESTART off: no restarter at all, so nothing but GETs can ever be sent.
    restarter = Restarter(client, rules, settings, clock) if settings.auto_restart else None
    monitor = Monitor(settings, rules, clock, restarter=restarter)
    poller = Poller(
        client,
        clock,
        poll_interval=settings.poll_interval,
        health_recheck_interval=settings.health_recheck_interval,
        required=settings.required_connectors,
        quiet_states=settings.ready_states,
        on_poll=_chained(monitor.on_poll, *observers),
        after_poll=restarter.after_poll if restarter is not None else None,
    )
    return monitor, poller


def _chained(first: PollObserver, *others: PollObserver) -> PollObserver:
    """One ``on_poll`` calling the monitor first, then e.g. the metrics, in order."""
    if not others:
        return first

    def on_poll(state: PollState, changes: list[Change]) -> None:
        first(state, changes)
        for observer in others:
            observer(state, changes)

    return on_poll


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """A fresh app for ``settings``; ``transport`` and ``clock`` are for tests."""
    clock = clock or SystemClock()
    runtime = Runtime()
    metrics = Metrics(settings, clock, lambda: runtime.monitor)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        identity = await resolve_identity(settings)
        async with build_http_client(settings, transport) as http:
            client = ConnectClient(
                http, settings, renew=lambda: build_http_client(settings, transport)
            )
            monitor, poller = build_monitor_and_poller(
                settings,
                client,
                identity,
                clock,
                observers=(metrics.observe_poll, _trim_after_change()),
            )
            runtime.monitor, runtime.poller = monitor, poller
            runtime.task = asyncio.create_task(poller.run(), name="connect-poller")
            logger.info(
                "watching %s every %gs, scope=%s, worker id %s",
                settings.connect_url,
                settings.poll_interval,
                settings.scope,
                settings.worker_id or f"auto-detected from {len(identity.ordered)} candidates",
            )
            if settings.auto_restart:
                logger.info(
                    "auto-restart on: FAILED connectors and tasks of this worker are restarted "
                    "(backoff unit %gs, longest wait %gs, attempts per connector: %s)",
                    settings.auto_restart_backoff_unit,
                    settings.auto_restart_backoff_max,
                    settings.auto_restart_max or "unlimited",
                )
                if "FAILED" in settings.live_fail_states:
                    logger.warning(
                        "AUTO_RESTART with FAILED in LIVE_FAIL_STATES: liveness will kill the "
                        "container after LIVE_GRACE, long before the restart backoff runs out"
                    )
            # Progress checks of sink tasks (issue 14): nothing loaded or started when off.
            progress = None
            if settings.kafka_bootstrap_servers is not None:
                from app.progress.wiring import attach as attach_progress

                progress = attach_progress(settings, client, monitor, clock, metrics.registry)
            try:
                yield
            finally:
                if progress is not None:
                    await progress.aclose()
                runtime.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runtime.task
                await client.aclose()

    app = FastAPI(
        title="kafka-connect-probe",
        version=__version__,
        description="Readiness and liveness probes for a Kafka Connect worker, answered from a "
        "background poll of its REST API.",
        lifespan=lifespan,
        # /ready/ is a 404, not a 307 to a Location built from the client's Host header.
        redirect_slashes=False,
        # The schema stays at /openapi.json; Swagger/ReDoc pages would load scripts from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(
        build_router(lambda: runtime.monitor, _loop_alive(runtime, settings, clock), metrics.render)
    )
    app.add_middleware(ProbeFastPath, monitor_source=lambda: runtime.monitor)
    app.state.runtime = runtime
    return app


def _trim_after_change() -> PollObserver:
    """Return freed heap to the system after a poll that replaced the snapshot (app.memory)."""
    trim = trimmer()

    def observe(state: PollState, changes: list[Change]) -> None:
        trim(state.generation)

    return observe


def _loop_alive(
    runtime: Runtime, settings: Settings, clock: Clock
) -> Callable[[], tuple[bool, str]]:
    """/healthz: the poll task is running and has finished a poll recently."""
    # A poll takes at most TIMEOUT (its requests' deadline), then the loop waits POLL_INTERVAL.
    allowed = settings.poll_interval + settings.timeout + 10.0

    def check() -> tuple[bool, str]:
        task, poller = runtime.task, runtime.poller
        if task is None or poller is None:
            return False, "the poll loop has not started"
        if task.done():
            return False, "the poll loop has stopped"
        quiet = clock.monotonic() - poller.last_loop_activity
        if quiet > allowed:
            return False, f"the poll loop has not completed a poll for {quiet:.0f}s"
        return True, f"the poll loop is running ({poller.state.polls} polls)"

    return check
