"""HTTP routes. Probe handlers only read the cached answers: they never call Connect."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import gzip_accepted

from app.answers import AnswerCache, ProbeAnswer, answer_probe
from app.wire import HealthzBody, json_response, openapi_components

logger = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
NO_STORE = {"Cache-Control": "no-store"}
Handler = Callable[..., Awaitable[Response]]

_PROBE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: json_response("ProbeBody", "healthy"),
    503: json_response("ProbeBody", "unhealthy, with reasons"),
}
_encoder = msgspec.json.Encoder()


def install_openapi_components(app: FastAPI) -> None:
    """Add the wire structs' schemas (app.wire) to the app's OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                openapi_components()
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _respond(answer: ProbeAnswer) -> Response:
    return Response(answer.body, answer.status_code, NO_STORE, JSON)


def build_router(
    answers_source: Callable[[], AnswerCache | None],
    loop_health: Callable[[], tuple[bool, str]],
    status_page: Callable[[], bytes | None],
    metrics: Callable[[bool], Awaitable[bytes]] | None = None,
) -> APIRouter:
    """Routes bound to the running app's answers (set by the lifespan); ``/metrics`` if given."""
    router = APIRouter()

    def get_and_head(path: str, **options: Any) -> Callable[[Handler], Handler]:
        """GET documented in the schema, HEAD answered the same way (one operation id each)."""

        def register(handler: Handler) -> Handler:
            router.add_api_route(path, handler, methods=["GET"], **options)
            router.add_api_route(path, handler, methods=["HEAD"], include_in_schema=False)
            return handler

        return register

    def probe(name: str) -> Response:
        # Normally answered earlier by app.serving.fastpath; kept for the schema and any mount.
        return _respond(answer_probe(answers_source(), name))

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
            200: json_response("HealthzBody", "the poll loop is alive"),
            503: json_response("HealthzBody", "the poll loop is dead or stuck"),
        },
        summary="The sidecar's own liveness, independent of Connect",
    )
    async def healthz() -> Response:
        alive, message = loop_health()
        body = _encoder.encode(HealthzBody(ok=alive, message=message))
        return Response(body, 200 if alive else 503, NO_STORE, JSON)

    @get_and_head(
        "/status",
        responses={200: {"description": "the full picture, for humans (a JSON object)"}},
        summary="Everything the sidecar knows: identity, connectors, verdicts, poll, settings",
    )
    async def status() -> Response:
        try:
            page = status_page()
            if page is None:
                return Response(b'{"error":"not started"}', 200, NO_STORE, JSON)
            return Response(page, 200, NO_STORE, JSON)
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
