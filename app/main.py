"""The application factory and its lifespan. No module-level app; nothing happens at import."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from app import __version__
from app.answers import AnswerCache
from app.clock import Clock, SystemClock
from app.connect.client import ConnectClient, build_http_client
from app.core import Core, build_core
from app.identity import Identity, detect_identity, explicit_identity, local_host_names
from app.memory import container_memory_limit, response_cap
from app.metrics import Metrics
from app.serving.fastpath import ProbeFastPath
from app.serving.routes import build_router, install_openapi_components
from app.settings import Settings
from app.statuspage import status_body

logger = logging.getLogger(__name__)

# Host-name look-ups (FQDN) can hang on a broken resolver; identity detection must not.
IDENTITY_LOOKUP_TIMEOUT = 3.0


@dataclass
class Runtime:
    """What the lifespan builds and the routes read."""

    core: Core | None = None
    task: asyncio.Task[None] | None = None

    def loop_health(self) -> tuple[bool, str]:
        """/healthz: the poll task runs and has finished a poll recently (app.poller)."""
        if self.core is None or self.task is None:
            return False, "the poll loop has not started"
        return self.core.poller.loop_health(running=not self.task.done())


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


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """A fresh app for ``settings``; ``transport`` and ``clock`` are for tests."""
    clock = clock or SystemClock()
    runtime = Runtime()
    metrics = Metrics(settings, clock, lambda: runtime.core)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        identity = await resolve_identity(settings)
        async with build_http_client(settings, transport) as http:
            client = ConnectClient(
                http, settings, renew=lambda: build_http_client(settings, transport)
            )
            core = build_core(
                settings,
                client,
                identity,
                clock,
                observers=(metrics.observe_poll,),
            )
            runtime.core = core
            runtime.task = asyncio.create_task(core.poller.run(), name="connect-poller")
            runtime.task.add_done_callback(_report_end)
            logger.info(
                "watching %s every %gs, scope=%s, worker id %s",
                settings.connect_url,
                settings.poll_interval,
                settings.scope,
                settings.worker_id or f"auto-detected from {len(identity.ordered)} candidates",
            )
            logger.info(
                "%s", response_cap(settings.max_response_bytes, container_memory_limit())[1]
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

                progress = attach_progress(settings, client, core.answers, clock, metrics.registry)
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

    def answers() -> AnswerCache | None:
        return runtime.core.answers if runtime.core is not None else None

    def status() -> bytes | None:
        core = runtime.core
        return status_body(core.answers, settings, clock, core.restarter) if core else None

    app.include_router(build_router(answers, runtime.loop_health, status, metrics.render))
    app.add_middleware(ProbeFastPath, answers_source=answers)
    install_openapi_components(app)
    app.state.runtime = runtime
    return app


def _report_end(task: "asyncio.Task[None]") -> None:
    """The supervised loop never returns; if the task ends anyway, say so (/healthz fails)."""
    if task.cancelled():
        return
    error = task.exception()
    logger.error("the poll task ended%s", "" if error is None else ":", exc_info=error)
