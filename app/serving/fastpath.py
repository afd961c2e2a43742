"""GET/HEAD /ready and /live answered before FastAPI's routing, from the cached answer.

Probes are the hot path: under load, routing through FastAPI's included router and building a
``Response`` per request cost more than the whole answer. Here a probe is two ``send`` calls with
an ASGI start message built once per answer (the transport's concern, so it lives here, not in
the answer cache). Every other path, and other methods, go to FastAPI.
"""

from collections.abc import Callable
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from app.answers import AnswerCache, ProbeAnswer, answer_probe

PROBES: Final = {"/ready": "ready", "/live": "live"}
EMPTY_BODY: Final = {"type": "http.response.body", "body": b""}


def start_message(answer: ProbeAnswer) -> dict[str, Any]:
    """The ``http.response.start`` message of an answer (the Date header is uvicorn's)."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(answer.body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    return {"type": "http.response.start", "status": answer.status_code, "headers": headers}


class ProbeFastPath:
    """ASGI middleware: answers probes itself, passes everything else on."""

    def __init__(self, app: ASGIApp, answers_source: Callable[[], AnswerCache | None]) -> None:
        self.app = app
        self._answers_source = answers_source
        # Per probe: the last answer and its start message (answers change rarely).
        self._starts: dict[str, tuple[ProbeAnswer, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            probe = PROBES.get(scope["path"])
            method = scope["method"]
            if probe is not None and method in ("GET", "HEAD"):
                answer = answer_probe(self._answers_source(), probe)
                await send(self._start(probe, answer))
                if method == "GET":
                    await send({"type": "http.response.body", "body": answer.body})
                else:
                    await send(EMPTY_BODY)
                return
        await self.app(scope, receive, send)

    def _start(self, probe: str, answer: ProbeAnswer) -> dict[str, Any]:
        known = self._starts.get(probe)
        if known is not None and known[0] is answer:
            return known[1]
        start = start_message(answer)
        self._starts[probe] = (answer, start)
        return start
