"""uvicorn's httptools protocol with the two limits it lacks: a bounded request head and a deadline.

Stock uvicorn on httptools buffers a request line and headers of any size (``h11_max_incomplete_
event_size`` applies to h11 only) and keeps a connection that never completes a request head open
forever (its keep-alive timer starts after the first response, and every byte received resets it).
Anyone who can reach the port could then grow the sidecar's memory or use up its file descriptors,
and the probes would fail with it. Here a request head (request line + headers) larger than
``MAX_HEAD_BYTES`` is answered 414/431 and the connection closed, and a connection that has not
delivered a complete head ``HEAD_TIMEOUT`` seconds after it opened (or after its previous
response) is closed. Probes send ~100-byte heads in one packet, so neither limit touches them.
"""

import asyncio
import logging
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.serving.httpdate import date_headers

# The request line plus all headers; kubelet's probe heads are ~100 bytes.
MAX_HEAD_BYTES: Final = 16 * 1024
# Seconds a connection may take to deliver a complete request head.
HEAD_TIMEOUT: Final = 10.0

logger = logging.getLogger("uvicorn.error")


def _refusal(status: int, reason: str, message: str) -> tuple[bytes, bytes]:
    """The answer's status line and the rest (headers after Date, and the body)."""
    body = message.encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode("ascii"),
        (
            "content-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        + body,
    )


_URI_TOO_LONG: Final = _refusal(
    414, "URI Too Long", f"request line longer than {MAX_HEAD_BYTES} bytes\n"
)
_HEADERS_TOO_LARGE: Final = _refusal(
    431, "Request Header Fields Too Large", f"request head larger than {MAX_HEAD_BYTES} bytes\n"
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus ``MAX_HEAD_BYTES`` and ``HEAD_TIMEOUT`` (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes: int | None = 0  # bytes of the head being read; None: not reading one
        self._line_bytes: int | None = None  # length of its request line, once seen whole
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            # Count up to the end of this head only: what follows it in the same read (pipelined
            # requests) is not counted, which bounds any excess by one read (~250 KB with uvloop).
            end = data.find(b"\r\n\r\n")
            size = len(data) if end < 0 else end + 4
            if self._line_bytes is None and (newline := data.find(b"\n", 0, size)) >= 0:
                self._line_bytes = self._head_bytes + newline
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD_BYTES:
                line = self._line_bytes
                self._refuse(
                    _URI_TOO_LONG if line is None or line > MAX_HEAD_BYTES else _HEADERS_TOO_LARGE
                )
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._cancel_head_timer()
        # Every answer to this request starts with these (app/serving/httpdate: no timer needed).
        self.server_state.default_headers = date_headers()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self.server_state.default_headers = date_headers()
        super().send_400_response(msg)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # keep-alive: the next request's head may follow
            self._head_bytes, self._line_bytes = 0, None
            self._arm_head_timer()

    def _refuse(self, answer: tuple[bytes, bytes]) -> None:
        self._head_bytes = None
        self._cancel_head_timer()
        if not self.transport.is_closing():
            logger.debug("refused an oversized request head (more than %d bytes)", MAX_HEAD_BYTES)
            line, rest = answer
            dates = b"".join(name + b": " + value + b"\r\n" for name, value in date_headers())
            self.transport.write(line + dates + rest)
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_overdue)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._head_bytes is not None and not self.transport.is_closing():
            self.transport.close()
