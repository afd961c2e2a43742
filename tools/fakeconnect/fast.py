"""The fast front end of the fake Connect: for the benchmark, the soak-free deploy checks and the
image test (stdlib asyncio, uvloop when available; no third-party import otherwise).

Serves N connectors x T tasks, every body rendered once up front, so that even the 10,000 x 4
``GET /connectors?expand=status`` map (several MB) costs the fake one buffer write and the fake is
never the bottleneck of a benchmark.

Routes (GET and HEAD):
  /connectors?expand=status[&expand=info]  map name -> {"status": {...}[, "info": {...}]}
  /connectors                              list of names
  /connectors/{name}/status                one connector's status (404 if unknown)
  /connectors/{name}/config                its config (the progress checks read the group id)
  /health                                  200 {"status": "healthy", "message": ...}
  /                                        server info {"version", "commit", "kafka_cluster_id"}
Control routes (not counted):
  /_stats[?reset=1]                        request counters and the times of the last expand polls
  /_control?vary=0|1&latency=SECONDS       change behaviour at run time

``--vary`` serves two byte-different but semantically identical renderings of the expand map in
turn (key order of each member reversed), so a client that skips unchanged bodies still has to
parse and evaluate every poll.

``--state FAILED`` puts every connector and task in that state (with a 60-frame trace), as a
mass failure would; ``--churn`` is ``--vary`` under the name the deploy checks use.

Run from the repository root: python -m tools.fakeconnect.fast --connectors 10000 --tasks 4
The first line on stdout is ``PORT <n>`` once the socket listens. Worker ids default to
``127.0.0.1:<port>``, what a sidecar with ``POD_IP=127.0.0.1`` detects as its own.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time
from collections import deque
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from tools.fakeconnect.bodies import HEALTHY, LONG_TRACE, ROOT, Task, dumps, error, status

_REASONS = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed", 400: b"Bad Request"}


def connector_name(i: int) -> str:
    return f"conn-{i:05d}"


class Catalogue:
    """All response bodies, rendered once."""

    def __init__(
        self,
        n: int,
        t: int,
        workers: list[str],
        failed: int,
        trace_bytes: int = 0,
        state: str = "RUNNING",
        sinks: bool = False,
    ) -> None:
        """``trace_bytes`` > 0: every task FAILED with a stack trace of about that size (a mass
        failure); its last line differs between the two renderings ``--vary`` alternates.
        ``state``: of every connector and task (FAILED ones carry a 60-frame trace)."""
        self.trace_bytes = trace_bytes
        self.names = [connector_name(i) for i in range(n)]
        self.status: dict[str, dict[str, Any]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(self.names):
            kind = "source" if i % 2 == 0 and not sinks else "sink"
            tasks: list[Task] = []
            for j in range(t):
                worker = workers[(i + j) % len(workers)]
                task: Task = (state, worker)
                if i < failed and j == 0:
                    task = ("FAILED", worker, BOOM)
                if trace_bytes:
                    task = ("FAILED", worker, _long_trace(i, j, trace_bytes))
                tasks.append(task)
            self.status[name] = status(
                name, state, workers[i % len(workers)], tasks, kind, trace=LONG_TRACE
            )
            self.info[name] = {
                "name": name,
                "config": {
                    "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
                    "tasks.max": str(t),
                    "topic": f"topic-{i}",
                    "name": name,
                },
                "tasks": [{"connector": name, "task": j} for j in range(t)],
                "type": kind,
            }
        self.list_body = _dumps(self.names)
        self.status_bodies = {name: _dumps(s) for name, s in self.status.items()}
        self.config_bodies = {name: _dumps(i["config"]) for name, i in self.info.items()}
        self.health_body = _dumps(HEALTHY)
        self.root_body = _dumps(ROOT)
        self._expand: dict[tuple[bool, bool, bool], bytes] = {}

    def expand_body(self, with_status: bool, with_info: bool, alternate: bool) -> bytes:
        key = (with_status, with_info, alternate)
        body = self._expand.get(key)
        if body is None:
            out: dict[str, dict[str, Any]] = {}
            for name in self.names:
                member: dict[str, Any] = {}
                if with_info:
                    member["info"] = self.info[name]
                if with_status:
                    member["status"] = self.status[name]
                out[name] = _reverse_keys(member) if alternate else member
            body = _dumps(out)
            if alternate and self.trace_bytes:
                body = body.replace(RENDER_MARK[0], RENDER_MARK[1])
            self._expand[key] = body
        return body


RENDER_MARK = (b"(rendering 0)", b"(rendering 1)")
BOOM = "org.apache.kafka.connect.errors.ConnectException: boom\n"


def _long_trace(i: int, j: int, size: int) -> str:
    """A Java-like trace of about ``size`` characters ending in a rendering mark."""
    head = (
        f"org.apache.kafka.connect.errors.ConnectException: java.sql.SQLException: "
        f"connection to db-{i % 7}.example:5432 refused (task {j})\n"
    )
    frame = "\tat org.example.sink.JdbcSinkTask.put(JdbcSinkTask.java:123)\n"
    frames = frame * max(0, (size - len(head)) // len(frame))
    return head + frames + "\t... 42 more " + RENDER_MARK[0].decode()


def _reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


_dumps = dumps


class State:
    def __init__(self, catalogue: Catalogue, latency: float, vary: bool) -> None:
        self.catalogue = catalogue
        self.latency = latency
        self.vary = vary
        self.flip = False
        self.counts: dict[str, int] = {}
        self.bytes_sent = 0
        self.expand_times: deque[float] = deque(maxlen=10_000)
        self.connections = 0
        self.reset_at = time.time()

    def count(self, route: str) -> None:
        self.counts[route] = self.counts.get(route, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {
            "requests": sum(self.counts.values()),
            "by_route": dict(self.counts),
            "bytes_sent": self.bytes_sent,
            "connections": self.connections,
            "expand_times": list(self.expand_times),
            "since": self.reset_at,
            "now": time.time(),
            "connectors": len(self.catalogue.names),
            "vary": self.vary,
            "latency": self.latency,
        }

    def reset(self) -> None:
        self.counts = {}
        self.bytes_sent = 0
        self.expand_times.clear()
        self.connections = 0
        self.reset_at = time.time()


def _response(status: int, body: bytes, head: bool, keep_alive: bool) -> bytes:
    headers = (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (
            status,
            _REASONS.get(status, b"Error"),
            len(body),
            b"" if keep_alive else b"Connection: close\r\n",
        )
    )
    return headers if head else headers + body


def _error(code: int, message: str) -> bytes:
    return _dumps(error(code, message))


class ConnectProtocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.closing:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self._send(_response(400, _error(400, "header too large"), False, False), 0)
                    self.closing = True
                return
            head = self.buffer[:end].decode("latin-1")
            rest = self.buffer[end + 4 :]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._send(_response(400, _error(400, "bad request line"), False, False), 0)
                self.closing = True
                return
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or "0")
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            connection = headers.get("connection", "").lower()
            keep_alive = (
                connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
            )
            status, body, delay = self.handle(method, target)
            if not keep_alive:
                self.closing = True
            self._send(_response(status, body, method == "HEAD", keep_alive), delay)

    def _send(self, payload: bytes, delay: float) -> None:
        self.state.bytes_sent += len(payload)
        close = self.closing
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write, payload, close)
        else:
            self._write(payload, close)

    def _write(self, payload: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(payload)
        if close or self.closing:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def handle(self, method: str, target: str) -> tuple[int, bytes, float]:
        state = self.state
        if method not in ("GET", "HEAD", "POST"):
            return 405, _error(405, "method not allowed"), 0.0
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query)
        cat = state.catalogue
        if path == "/_stats":
            body = _dumps(state.stats())
            if query.get("reset", ["0"])[0] not in ("0", ""):
                state.reset()
            return 200, body, 0.0
        if path == "/_control":
            if "vary" in query:
                state.vary = query["vary"][0] not in ("0", "false", "")
            if "latency" in query:
                state.latency = float(query["latency"][0])
            return 200, _dumps({"vary": state.vary, "latency": state.latency}), 0.0
        delay = state.latency
        if path == "/connectors":
            expand = set(query.get("expand", []))
            if expand:
                state.count("connectors_expand")
                state.expand_times.append(time.time())
                alternate = False
                if state.vary:
                    state.flip = not state.flip
                    alternate = state.flip
                body = cat.expand_body("status" in expand, "info" in expand, alternate)
                return 200, body, delay
            state.count("connectors_list")
            return 200, cat.list_body, delay
        if path == "/health":
            state.count("health")
            return 200, cat.health_body, delay
        if path == "/":
            state.count("root")
            return 200, cat.root_body, delay
        if path.startswith("/connectors/") and path.endswith("/status"):
            state.count("connector_status")
            name = unquote(path[len("/connectors/") : -len("/status")])
            found = cat.status_bodies.get(name)
            if found is None:
                return 404, _error(404, f"No status found for connector {name}"), delay
            return 200, found, delay
        if path.startswith("/connectors/") and path.endswith("/config"):
            state.count("connector_config")
            name = unquote(path[len("/connectors/") : -len("/config")])
            found = cat.config_bodies.get(name)
            if found is None:
                return 404, _error(404, f"Connector {name} not found"), delay
            return 200, found, delay
        state.count("other")
        return 404, _error(404, "HTTP 404 Not Found"), delay


async def serve(args: argparse.Namespace) -> None:
    # Bound before the bodies are rendered: the default worker id names the port.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    port = listener.getsockname()[1]
    workers = [w.strip() for w in args.worker_ids.split(",") if w.strip()] or [f"127.0.0.1:{port}"]
    catalogue = Catalogue(
        args.connectors, args.tasks, workers, args.failed, args.trace_bytes, args.state, args.sinks
    )
    state = State(catalogue, args.latency, args.vary)
    # Render the expand bodies the poller will ask for before accepting connections.
    catalogue.expand_body(True, False, False)
    if args.vary:
        catalogue.expand_body(True, False, True)
    loop = asyncio.get_running_loop()
    listener.listen(1024)
    server = await loop.create_server(lambda: ConnectProtocol(state), sock=listener)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Fake Kafka Connect REST server for benchmarks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (printed)")
    p.add_argument("--connectors", "-n", type=int, default=100)
    p.add_argument("--tasks", "-t", type=int, default=4)
    p.add_argument(
        "--worker-ids",
        default="",
        help="comma-separated worker ids; connector i runs on worker i %% W, task j on (i+j) %% W "
        "(default 127.0.0.1:<port>)",
    )
    p.add_argument("--state", default="RUNNING", help="state of every connector and task")
    p.add_argument("--failed", type=int, default=0, help="first K connectors get task 0 FAILED")
    p.add_argument(
        "--trace-bytes",
        type=int,
        default=0,
        help="mass failure: every task FAILED with a trace of about this many bytes",
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    p.add_argument(
        "--vary",
        "--churn",
        action="store_true",
        help="alternate two renderings of the map (a different body on every poll)",
    )
    p.add_argument("--sinks", action="store_true", help="every connector a sink (default: half)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args))
    else:
        uvloop.run(serve(args))


if __name__ == "__main__":
    main()
