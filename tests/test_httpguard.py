"""The request-head guard (app/httpguard.py), driven directly: a fake transport and a loop whose
``call_later`` timers fire only when the test says so, as uvicorn's own protocol tests do. No
socket and no wall clock: HEAD_TIMEOUT is a timer armed and cancelled at the right moments."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from app.serving.headguard import HEAD_TIMEOUT, MAX_HEAD_BYTES, GuardedHttpToolsProtocol

pytestmark = pytest.mark.anyio

REQUEST = b"GET /ready HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.31\r\n\r\n"


class FakeTransport:
    """What the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 18083), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: object) -> None:
        pass


@dataclass
class Timer:
    delay: float
    callback: Callable[..., object]
    args: tuple[object, ...]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLoop:
    """Tasks go to the real loop (the ASGI app runs); timers wait for ``fire``."""

    real: asyncio.AbstractEventLoop
    timers: list[Timer] = field(default_factory=list)

    def create_task(self, coroutine: Any, **kwargs: Any) -> "asyncio.Task[Any]":
        return self.real.create_task(coroutine, **kwargs)

    def call_later(self, delay: float, callback: Callable[..., object], *args: object) -> Timer:
        timer = Timer(delay, callback, args)
        self.timers.append(timer)
        return timer

    def head_timers(self) -> list[Timer]:
        """The guard's timers (uvicorn's keep-alive timer has its own, longer delay)."""
        return [timer for timer in self.timers if timer.delay == HEAD_TIMEOUT]

    def pending_head_timers(self) -> list[Timer]:
        return [timer for timer in self.head_timers() if not timer.cancelled]

    def fire_head_timers(self) -> None:
        """HEAD_TIMEOUT has passed: run every head timer still armed."""
        for timer in self.pending_head_timers():
            timer.cancelled = True
            timer.callback(*timer.args)


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class Connection:
    protocol: GuardedHttpToolsProtocol
    transport: FakeTransport
    loop: FakeLoop

    async def settle(self) -> None:
        """Let the ASGI app run its course on the real loop."""
        for _ in range(20):
            await asyncio.sleep(0)


def connect() -> Connection:
    loop = FakeLoop(asyncio.get_running_loop())
    config = Config(app=ok_app, lifespan="off", log_level="warning", timeout_keep_alive=30)
    protocol = GuardedHttpToolsProtocol(
        config=config,
        server_state=ServerState(),
        app_state={},
        _loop=loop,
    )
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return Connection(protocol, transport, loop)


async def test_a_silent_connection_is_closed_when_the_head_timer_fires() -> None:
    conn = connect()
    [timer] = conn.loop.pending_head_timers()  # armed as the connection opened
    assert timer.delay == HEAD_TIMEOUT
    assert not conn.transport.closed
    conn.loop.fire_head_timers()
    assert conn.transport.closed
    assert conn.transport.written == b""  # closed without an answer


async def test_a_trickled_head_does_not_re_arm_the_timer() -> None:
    conn = connect()
    for byte in REQUEST[:-4]:  # everything but the final CRLF CRLF, a byte at a time
        conn.protocol.data_received(bytes([byte]))
    assert len(conn.loop.head_timers()) == 1, "each byte must not buy more time"
    assert not conn.transport.closed
    conn.loop.fire_head_timers()
    assert conn.transport.closed


async def test_a_complete_head_cancels_the_timer_and_is_answered() -> None:
    conn = connect()
    [timer] = conn.loop.head_timers()
    conn.protocol.data_received(REQUEST)
    assert timer.cancelled
    await conn.settle()
    assert conn.transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ndate: " in conn.transport.written.lower()


async def test_after_an_answer_the_next_head_gets_a_fresh_timer() -> None:
    """An idle kept-alive connection is closed too, HEAD_TIMEOUT after the previous answer."""
    conn = connect()
    conn.protocol.data_received(REQUEST)
    await conn.settle()
    assert conn.transport.written.startswith(b"HTTP/1.1 200")
    [fresh] = conn.loop.pending_head_timers()
    assert conn.loop.head_timers().index(fresh) == 1  # the second one armed
    conn.loop.fire_head_timers()
    assert conn.transport.closed


async def test_a_prompt_keep_alive_client_is_never_cut() -> None:
    conn = connect()
    for _ in range(3):
        conn.protocol.data_received(REQUEST)
        await conn.settle()
        assert not conn.transport.closed
    assert conn.transport.written.count(b"HTTP/1.1 200 OK") == 3
    assert len(conn.loop.pending_head_timers()) == 1  # only the one waiting for the next head
    conn.protocol.connection_lost(None)
    assert conn.loop.pending_head_timers() == []  # nothing left to fire on a closed connection


async def test_a_head_over_the_limit_is_431_and_closed() -> None:
    conn = connect()
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    conn.protocol.data_received(b"GET /ready HTTP/1.1\r\nHost: probe\r\n")
    for _ in range(MAX_HEAD_BYTES // len(filler) + 1):
        conn.protocol.data_received(filler)
        if conn.transport.closed:
            break
    assert conn.transport.closed
    assert conn.transport.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert conn.loop.pending_head_timers() == []


async def test_a_request_line_over_the_limit_is_414() -> None:
    conn = connect()
    conn.protocol.data_received(b"GET /" + b"a" * MAX_HEAD_BYTES)
    assert conn.transport.closed
    assert conn.transport.written.startswith(b"HTTP/1.1 414 URI Too Long\r\n")


async def test_a_head_just_under_the_limit_is_served() -> None:
    conn = connect()
    head = b"GET /ready HTTP/1.1\r\nHost: probe\r\nX-Pad: "
    padding = MAX_HEAD_BYTES - len(head) - len(b"\r\n\r\n")
    conn.protocol.data_received(head + b"a" * padding + b"\r\n\r\n")
    await conn.settle()
    assert conn.transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
