"""A misbehaving Kafka Connect on a real socket, for fault-injection tests and the soak.

A raw HTTP/1.1 server (asyncio, its own thread, 127.0.0.1, a free port) so that it can do what a
well-behaved framework never would: refuse, reset mid-body, stay silent, trickle, lie about lengths,
stream 200 MB without holding it. ``FaultyConnect.fault`` (one of ``FAULTS``) selects the
misbehaviour; ``None`` serves a healthy cluster from ``set_connectors``. ``FAULTS`` maps every fault
to the reason code ``/ready`` must answer while it lasts.
"""

import asyncio
import contextlib
import json
import socket
import struct
import threading
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from functools import cache
from typing import Any, Final
from urllib.parse import unquote

from tools.fakeconnect.bodies import error, expanded, status

HUGE_BYTES: Final = 200 * 1024 * 1024  # the "200 MB body"
_CHUNK: Final = 1024 * 1024

# fault -> the reason code /ready gives while it lasts (the first reason of a 503).
FAULTS: Final[Mapping[str, str]] = {
    "refused": "connect_unreachable",
    "reset_mid_body": "connect_unreachable",
    "truncated_body": "connect_unreachable",
    "not_http": "connect_unreachable",
    "huge_headers": "connect_unreachable",
    "silent": "connect_timeout",
    "trickle_body": "connect_timeout",
    "trickle_headers": "connect_timeout",
    "html_500": "connect_http_error",
    "json_503": "connect_http_error",
    "unauthorized_401": "connect_auth",
    "forbidden_403": "connect_auth",
    "jetty_404_starting": "connect_starting",
    "redirect_loop": "connect_bad_response",
    "empty_200": "connect_bad_response",
    "html_200": "connect_bad_response",
    # One bad entry (owned by this worker) is that connector's problem, not a failed poll.
    "null_worker_id": "status_malformed",
    "numbers_as_strings": "status_malformed",
    "list_where_map": "connect_bad_response",
    "map_where_list": "status_malformed",
    "deep_nesting": "connect_bad_response",
    "invalid_utf8": "connect_bad_response",
    "huge_declared": "connect_bad_response",
    "huge_chunked": "connect_bad_response",
    "huge_connectors": "connect_bad_response",
    "gzip_bomb": "connect_bad_response",
    "unknown_state": "connector_state",
    "odd_names": "connector_state",
    "odd_names_legacy": "connector_state",
    "health_unhealthy": "worker_unhealthy",
}

# Faults that concern only GET /connectors: /, /health (and per-connector statuses) stay good.
_CONNECTORS_ONLY: Final = frozenset(
    {
        "null_worker_id",
        "numbers_as_strings",
        "list_where_map",
        "map_where_list",
        "deep_nesting",
        "invalid_utf8",
        "unknown_state",
        "empty_200",
        "html_200",
        "huge_connectors",
    }
)

LONG_NAME: Final = "x" * 10_000
# Connector names a URL or a log line must survive; the FAILED one holds a '/' and a '%'.
ODD_NAMES: Final = (
    "a/b/../c",
    "100%25 done%",
    "with spaces and\ttab",
    "ünïcødé-连接器-🚀",
    "line\nbreak\x1b[31m",
    "?query=1&x#frag",
    LONG_NAME,
)
# FAILED, so that they show in reasons and log lines: a path, a 10,000-character name, a log forger.
ODD_FAILED: Final = frozenset({"a/b/../c", LONG_NAME, "line\nbreak\x1b[31m"})


def _expanded(connectors: Mapping[str, dict[str, Any]]) -> bytes:
    return json.dumps(expanded(connectors)).encode()


def _odd_cluster() -> dict[str, dict[str, Any]]:
    return {
        name: status(name, "FAILED" if name in ODD_FAILED else "RUNNING", tasks=1)
        for name in ODD_NAMES
    }


def _head(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _response(
    status: int, reason: str, body: bytes, content_type: str = "application/json"
) -> bytes:
    return (
        _head(
            status,
            reason,
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Connection", "keep-alive"),
            ],
        )
        + body
    )


def _json(status: int, body: object) -> bytes:
    reasons = {200: "OK", 404: "Not Found", 500: "Server Error", 503: "Service Unavailable"}
    return _response(status, reasons.get(status, "Whatever"), json.dumps(body).encode())


_JETTY_404 = (
    b'<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
    b"<title>Error 404 Not Found</title>\n</head>\n<body><h2>HTTP ERROR 404 Not Found</h2>\n"
    b"<table>\n<tr><th>URI:</th><td>/connectors</td></tr>\n</table>\n</body>\n</html>\n"
)
_HTML_500 = (
    b"<html><head><title>Error 500 Server Error</title></head><body><h2>HTTP ERROR 500</h2>"
    b"<pre>javax.servlet.ServletException: java.lang.NullPointerException</pre></body></html>"
)

_BAD_SHAPES: Final[Mapping[str, bytes]] = {
    "null_worker_id": (
        b'{"orders": {"status": {"connector": {"state": "RUNNING", "worker_id": null},'
        b' "tasks": [{"id": 0, "state": "RUNNING", "worker_id": "10.0.0.1:8083"}]}}}'
    ),
    "numbers_as_strings": (
        b'{"orders": {"status": {"connector": {"state": "RUNNING", "worker_id": "10.0.0.1:8083"},'
        b' "tasks": [{"id": "0", "state": "RUNNING", "worker_id": "10.0.0.1:8083"}]}}}'
    ),
    "list_where_map": (
        b'[{"name": "orders", "status": {"connector": {"state": "RUNNING", '
        b'"worker_id": "10.0.0.1:8083"}, "tasks": []}}]'
    ),
    "map_where_list": (
        b'{"orders": {"status": {"connector": {"state": "RUNNING", "worker_id": "10.0.0.1:8083"},'
        b' "tasks": {"0": {"id": 0, "state": "RUNNING", "worker_id": "10.0.0.1:8083"}}}}}'
    ),
    "deep_nesting": b'{"orders": {"status": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    "invalid_utf8": (
        b'{"ord\xff\xfeers": {"status": {"connector": {"state": "RUNNING", '
        b'"worker_id": "10.0.0.1:8083"}, "tasks": []}}}'
    ),
    "unknown_state": _expanded({"orders": status("orders", "ZOMBIE", tasks=1)}),
    "empty_200": b"",
    "html_200": b"<html><body>Welcome to nginx!</body></html>",
}


@cache
def gzip_bomb() -> bytes:
    """256 MiB of spaces, gzipped twice: 3 KB on the wire."""
    inner = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b" " * _CHUNK
    parts = [inner.compress(block) for _ in range(256)]
    once = b"".join(parts) + inner.flush()
    outer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return outer.compress(once) + outer.flush()


def _generated_json() -> Iterator[bytes]:
    """An endless, valid-looking expanded-status body, 1 MiB per chunk, generated as it goes."""
    yield b"{"
    entry = (
        b'"c%08d": {"status": {"connector": {"state": "RUNNING", "worker_id": "w:1"}, '
        b'"tasks": []}}, '
    )
    index = 0
    while True:
        batch = []
        size = 0
        while size < _CHUNK:
            item = entry % index
            batch.append(item)
            size += len(item)
            index += 1
        yield b"".join(batch)


class FaultyConnect:
    """``with FaultyConnect() as connect: connect.fault = "silent"`` (or ``set_fault``)."""

    def __init__(self) -> None:
        self.fault: str | None = None
        self.targets: deque[str] = deque(maxlen=2000)  # raw request targets, newest last
        self.requests = 0
        self.port = 0
        self._bodies: tuple[bytes, dict[str, bytes]] = (b"{}", {})
        self._odd: tuple[bytes, dict[str, bytes]] = self._encode(_odd_cluster())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # --- control, from any thread ------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FaultyConnect":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        gzip_bomb()  # built once (~0.4 s), before it could delay an answer
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def set_connectors(self, connectors: Mapping[str, dict[str, Any]]) -> None:
        """What the healthy cluster reports (replaced whole: safe across threads)."""
        self._bodies = self._encode(connectors)

    def set_fault(self, fault: str | None) -> None:
        """Switch behaviour; ``refused`` closes the port (and open connections) until cleared."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        previous, self.fault = self.fault, fault
        if fault == "refused":
            self._call(self._close(listener=True))
        elif previous == "refused":
            self._call(self._listen())
        elif previous is None:
            # Healthy to faulty: the next request on any connection meets the fault. Closing
            # kept-alive connections here would race with requests being sent on them and show
            # up as a different fault (a disconnect) before the intended one.
            pass
        else:
            self._call(self._close(listener=False))  # a fault's stuck connections end with it

    def _call(self, coroutine: Awaitable[None]) -> None:
        async def run() -> None:
            await coroutine

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    @staticmethod
    def _encode(connectors: Mapping[str, dict[str, Any]]) -> tuple[bytes, dict[str, bytes]]:
        each = {name: json.dumps(body).encode() for name, body in connectors.items()}
        return _expanded(connectors), each

    # --- the server, on its own loop ---------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True, limit=1024 * 1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self, *, listener: bool) -> None:
        if listener and self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _shutdown(self) -> None:
        await self._close(listener=True)  # aborted connections end their handlers...
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:  # ...and whatever still waits (a trickle's sleep) is cancelled
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                    return
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
                self.targets.append(target)
                self.requests += 1
                keep_open = await self._answer(target, reader, writer)
                if not keep_open:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _answer(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; ``False`` closes the connection."""
        path = target.split("?", 1)[0]
        fault = self.fault
        if fault in _CONNECTORS_ONLY and path != "/connectors":
            fault = None
        handler = _HANDLERS.get(fault) if fault is not None else None
        if handler is not None:
            return await handler(self, target, reader, writer)
        writer.write(self._route(target, fault))
        await writer.drain()
        return True

    def _route(self, target: str, fault: str | None) -> bytes:
        path, _, query = target.partition("?")
        expanded, each = self._bodies
        legacy = False
        if fault in ("odd_names", "odd_names_legacy"):
            expanded, each = self._odd
            legacy = fault == "odd_names_legacy"
        if fault is not None and fault in _BAD_SHAPES and path == "/connectors":
            return _response(200, "OK", _BAD_SHAPES[fault])
        if path == "/":
            return _json(200, {"version": "3.9.0", "commit": "abc", "kafka_cluster_id": "c1"})
        if path == "/health":
            if fault == "health_unhealthy":
                return _json(500, {"status": "unhealthy", "message": "herder is stuck"})
            return _json(200, {"status": "healthy", "message": "ready"})
        if path == "/connectors":
            if "expand=status" in query and not legacy:
                return _response(200, "OK", expanded)
            names = [json.loads(body)["name"] for body in each.values()]
            return _json(200, names)
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "connectors" and parts[3] == "status":
            body = each.get(unquote(parts[2]))
            if body is not None:
                return _response(200, "OK", body)
            return _json(404, error(404, "No status found for connector"))
        return _json(404, error(404, "HTTP 404 Not Found"))


Handler = Callable[
    [FaultyConnect, str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]
]


async def _wait_for_close(reader: asyncio.StreamReader) -> None:
    """Hold the connection, saying nothing, until the client gives up."""
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass


async def _silent(_: FaultyConnect, __: str, reader: asyncio.StreamReader, ___: Any) -> bool:
    await _wait_for_close(reader)
    return False


async def _reset_mid_body(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(
        _head(200, "OK", [("Content-Type", "application/json"), ("Content-Length", "1000000")])
    )
    writer.write(
        b'{"orders": {"status": {"connector": {"state": "RUNNING", "worker_id": "' + b"x" * 8000
    )
    await writer.drain()
    await asyncio.sleep(0.02)
    sock = writer.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close() sends RST, not FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    return False


async def _truncated_body(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(
        _head(200, "OK", [("Content-Type", "application/json"), ("Content-Length", "5000")])
    )
    writer.write(b'{"orders": {"status": ')
    await writer.drain()
    return False  # FIN after 22 of 5000 bytes


async def _not_http(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\nProtocol mismatch.\r\n")
    await writer.drain()
    return False


async def _huge_headers(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    with contextlib.suppress(OSError):
        for _index in range(64):  # 64 MiB of one header, never finished
            writer.write(b"X-Filler: " + b"a" * _CHUNK + b"\r\n")
            await writer.drain()
    return False


async def _trickle(data: bytes, writer: asyncio.StreamWriter, every: float = 0.01) -> None:
    for index in range(len(data)):
        writer.write(data[index : index + 1])
        await writer.drain()
        await asyncio.sleep(every)


async def _trickle_body(
    connect: FaultyConnect, _: str, __: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    body = connect._bodies[0] + b" " * 100_000  # far more bytes than the deadline lets through
    writer.write(
        _head(200, "OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    )
    await _trickle(body, writer)
    return False


async def _trickle_headers(
    connect: FaultyConnect, _: str, __: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    await _trickle(_response(200, "OK", connect._bodies[0]) + b" " * 100_000, writer)
    return False


def _fixed(answer: bytes) -> Handler:
    async def handler(
        _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(answer)
        await writer.drain()
        return True

    return handler


async def _redirect_loop(
    _: FaultyConnect, target: str, __: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    writer.write(_head(307, "Temporary Redirect", [("Location", target), ("Content-Length", "0")]))
    await writer.drain()
    return True


async def _huge(
    *, chunked: bool, writer: asyncio.StreamWriter, extra: list[tuple[str, str]] | None = None
) -> bool:
    headers = [("Content-Type", "application/json"), *(extra or [])]
    headers.append(
        ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(HUGE_BYTES))
    )
    writer.write(_head(200, "OK", headers))
    sent = 0
    for piece in _generated_json():
        piece = piece[: HUGE_BYTES - sent]
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()
        sent += len(piece)
        if sent >= HUGE_BYTES:
            break
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return False


async def _huge_declared(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    return await _huge(chunked=False, writer=writer)


async def _huge_chunked(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    return await _huge(chunked=True, writer=writer)


async def _gzip_bomb(
    _: FaultyConnect, __: str, ___: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> bool:
    body = gzip_bomb()
    writer.write(
        _head(
            200,
            "OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip, gzip"),
                ("Content-Length", str(len(body))),
            ],
        )
        + body
    )
    await writer.drain()
    return False


_HANDLERS: Final[Mapping[str, Handler]] = {
    "silent": _silent,
    "reset_mid_body": _reset_mid_body,
    "truncated_body": _truncated_body,
    "not_http": _not_http,
    "huge_headers": _huge_headers,
    "trickle_body": _trickle_body,
    "trickle_headers": _trickle_headers,
    "html_500": _fixed(_response(500, "Server Error", _HTML_500, "text/html;charset=iso-8859-1")),
    "json_503": _fixed(_json(503, error(503, "Request timed out"))),
    "unauthorized_401": _fixed(
        _response(401, "Unauthorized", b"User cannot access the resource.", "text/plain")
    ),
    "forbidden_403": _fixed(_json(403, error(403, "Forbidden"))),
    "jetty_404_starting": _fixed(
        _response(404, "Not Found", _JETTY_404, "text/html;charset=utf-8")
    ),
    "redirect_loop": _redirect_loop,
    "huge_declared": _huge_declared,
    "huge_chunked": _huge_chunked,
    "huge_connectors": _huge_chunked,
    "gzip_bomb": _gzip_bomb,
}
