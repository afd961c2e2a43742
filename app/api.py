"""HTTP routes. Probe handlers only read the monitor's cached answer: they never call Connect."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import gzip_accepted

from app.monitor import Monitor, ProbeAnswer, answer_probe
from app.schemas import HealthzBody, ProbeBody, StatusBody

logger = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
NO_STORE = {"Cache-Control": "no-store"}
Handler = Callable[..., Awaitable[Response]]

_PROBE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ProbeBody, "description": "healthy"},
    503: {"model": ProbeBody, "description": "unhealthy, with reasons"},
}


def _respond(answer: ProbeAnswer) -> Response:
    return Response(answer.body, answer.status_code, NO_STORE, JSON)


def build_router(
    monitor_source: Callable[[], Monitor | None],
    loop_alive: Callable[[], tuple[bool, str]],
    metrics: Callable[[bool], Awaitable[bytes]] | None = None,
) -> APIRouter:
    """Routes bound to the running app's monitor (set by the lifespan); ``/metrics`` if given."""
    router = APIRouter()

    def get_and_head(path: str, **options: Any) -> Callable[[Handler], Handler]:
        """GET documented in the schema, HEAD answered the same way (one operation id each)."""

        def register(handler: Handler) -> Handler:
            router.add_api_route(path, handler, methods=["GET"], **options)
            router.add_api_route(path, handler, methods=["HEAD"], include_in_schema=False)
            return handler

        return register

    def probe(name: str) -> Response:
        # Normally answered earlier by app.fastpath; kept so the schema and any mount still work.
        return _respond(answer_probe(monitor_source(), name))

    @get_and_head(
        "/ready",
        responses=_PROBE_RESPONSES,
        summary="Readiness: this worker can do its job (200) or not (503)",
    )
    async def ready() -> Response:
        return probe("ready")

    @get_and_head(
        "/live",
        responses=_PROBE_RESPONSES,
        summary="Liveness: 503 only when restarting the Connect container would help",
    )
    async def live() -> Response:
        return probe("live")

    @get_and_head(
        "/healthz",
        responses={
            200: {"model": HealthzBody, "description": "the poll loop is alive"},
            503: {"model": HealthzBody, "description": "the poll loop is dead or stuck"},
        },
        summary="The sidecar's own liveness, independent of Connect",
    )
    async def healthz() -> Response:
        alive, message = loop_alive()
        body = HealthzBody(ok=alive, message=message).model_dump_json().encode()
        return Response(body, 200 if alive else 503, NO_STORE, JSON)

    @get_and_head(
        "/status",
        responses={200: {"model": StatusBody, "description": "the full picture, for humans"}},
        summary="Everything the sidecar knows: identity, connectors, verdicts, poll, settings",
    )
    async def status() -> Response:
        monitor = monitor_source()
        if monitor is None:
            return Response(b'{"error":"not started"}', 200, NO_STORE, JSON)
        try:
            return Response(monitor.status(), 200, NO_STORE, JSON)
        except Exception as exc:  # /status is for humans debugging; it must always answer
            message = f"internal error rendering /status: {type(exc).__name__}"
            return Response(b'{"error":"' + message.encode() + b'"}', 200, NO_STORE, JSON)

    if metrics is not None:
        render = metrics

        @get_and_head(
            "/metrics",
            response_class=PlainTextResponse,
            responses={503: {"description": "rendering failed (internal error)"}},
            summary="Prometheus metrics from the latest poll (a scrape never calls Connect)",
        )
        async def prometheus(request: Request) -> Response:
            gzipped = gzip_accepted(request.headers.get("accept-encoding", ""))
            try:
                body = await render(gzipped)
            except Exception as exc:  # a scrape answers 503 with a reason, never 500
                logger.error("rendering /metrics failed", exc_info=exc)
                message = f"metrics unavailable: internal error ({type(exc).__name__})\n"
                return Response(message.encode(), 503, NO_STORE, TEXT)
            headers = {**NO_STORE, "Content-Encoding": "gzip"} if gzipped else NO_STORE
            return Response(body, 200, headers, CONTENT_TYPE_LATEST)

    return router
