"""GET/HEAD /ready and /live answered before FastAPI's routing, from the cached answer.

Probes are the hot path: under load, routing through FastAPI's included router and building a
``Response`` per request cost more than the whole answer. Here a probe is two ``send`` calls with
a start message built once per verdict. Every other path, and other methods, go to FastAPI.
"""

from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from app.monitor import Monitor, answer_probe

PROBES: Final = {"/ready": "ready", "/live": "live"}
EMPTY_BODY: Final = {"type": "http.response.body", "body": b""}


class ProbeFastPath:
    """ASGI middleware: answers probes itself, passes everything else on."""

    def __init__(self, app: ASGIApp, monitor_source: Callable[[], Monitor | None]) -> None:
        self.app = app
        self._monitor_source = monitor_source

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            probe = PROBES.get(scope["path"])
            method = scope["method"]
            if probe is not None and method in ("GET", "HEAD"):
                answer = answer_probe(self._monitor_source(), probe)
                await send(answer.start)
                if method == "GET":
                    await send({"type": "http.response.body", "body": answer.body})
                else:
                    await send(EMPTY_BODY)
                return
        await self.app(scope, receive, send)
