"""Whatever arrives on the sidecar's own port: a real ``connect-probe`` process, raw sockets.

Limits (``app.serving.headguard``): a request head (request line + headers) over 16 KiB is
refused with 414 (request line) or 431 (headers) and the connection closed; a connection that
has not sent a complete head 10 s after it opened (or after its previous response) is closed.
httptools itself rejects malformed requests with 400. Nothing here may produce a 5xx other than a
probe's 503, crash the process, or grow its memory.
"""

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from app.serving import headguard as httpguard
from app.serving.headguard import MAX_HEAD_BYTES, GuardedHttpToolsProtocol
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.faulty import FaultyConnect
from tools.procs import RunningSidecar, free_port, rss_bytes, run_sidecar

pytestmark = pytest.mark.process  # a real sidecar, hostile clients on real sockets

KIB = 1024
ROUTES = ("/ready", "/live", "/status", "/healthz", "/metrics", "/openapi.json")
PROBES = ("/ready", "/live")


@pytest.fixture(scope="module")
def connect() -> Iterator[FaultyConnect]:
    with FaultyConnect() as fake:
        fake.set_connectors({"orders": status("orders")})
        yield fake


@pytest.fixture(scope="module")
def sidecar_process(
    connect: FaultyConnect, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSidecar]:
    env = {
        "CONNECT_PROBE_CONNECT_URL": connect.url,
        "CONNECT_PROBE_WORKER_ID": THIS_WORKER,
        "CONNECT_PROBE_POLL_INTERVAL": "0.2",
        "CONNECT_PROBE_TIMEOUT": "1",
    }
    with run_sidecar(env, tmp_path_factory.mktemp("hostile")) as running:
        wait_ready(running.url)
        yield running


@pytest.fixture
def sidecar(sidecar_process: RunningSidecar) -> Iterator[RunningSidecar]:
    """The module's sidecar; nothing a test sends may make it log a traceback or an error."""
    start = sidecar_process.log_size()
    yield sidecar_process
    log = sidecar_process.output(since=start)
    assert "Traceback" not in log
    assert " ERROR " not in log


def wait_ready(url: str) -> None:
    end = time.monotonic() + 10
    while httpx.get(f"{url}/ready").status_code != 200:
        assert time.monotonic() < end, "the sidecar never became ready"
        time.sleep(0.05)


def port_of(sidecar: RunningSidecar) -> int:
    return int(sidecar.url.rsplit(":", 1)[1])


def exchange(
    port: int, request: bytes, *, read_timeout: float = 3.0, answers: int | None = None
) -> bytes:
    """Send ``request`` on a new connection, return what comes back until the server closes
    (or ``read_timeout`` passes, or ``answers`` responses arrived: then the connection is not
    half-closed first); a reset while sending or reading is returned as b"RESET"."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        answer = b""
        try:
            sock.sendall(request)
            if answers is None:
                with contextlib.suppress(OSError):  # the server may have closed already
                    sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answer += chunk
                if answers is not None and answer.count(b"HTTP/1.1 ") >= answers:
                    break
        except (ConnectionResetError, BrokenPipeError):
            return answer or b"RESET"
        except TimeoutError:
            pass
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def still_serving(sidecar: RunningSidecar) -> None:
    assert sidecar.process.poll() is None, "connect-probe exited"
    started = time.perf_counter()
    response = httpx.get(f"{sidecar.url}/ready", timeout=2)
    assert response.status_code in (200, 503)
    assert time.perf_counter() - started < 0.5


# --- paths and methods ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/ready/",  # no 307 built from the client's Host header: FastAPI(redirect_slashes=False)
        "/READY",
        "/ready%00",
        "/ready;x=1",
        "/%2e%2e/ready",
        "/../../etc/passwd",
        "/connectors",
        "/" + "a" * 8000,
        "/ready/../live",
    ],
)
def test_unknown_paths_are_404(sidecar: RunningSidecar, path: str) -> None:
    answer = exchange(port_of(sidecar), f"GET {path} HTTP/1.1\r\nHost: evil\r\n\r\n".encode())
    assert status_of(answer) == 404, answer[:200]
    assert b"location:" not in answer.lower()


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_wrong_methods_are_405(sidecar: RunningSidecar, method: str, path: str) -> None:
    response = httpx.request(method, f"{sidecar.url}{path}", content=b"x" * 100)
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize("path", ROUTES)
def test_head_is_get_without_a_body(sidecar: RunningSidecar, path: str) -> None:
    head = httpx.head(f"{sidecar.url}{path}")
    assert head.status_code == httpx.get(f"{sidecar.url}{path}").status_code
    assert head.content == b""


# --- oversized request heads ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "request_bytes", "expected"),
    [
        (
            "header of 17 KiB",
            b"GET /ready HTTP/1.1\r\nX-Big: " + b"a" * 17 * KIB + b"\r\n\r\n",
            431,
        ),
        (
            "header of 64 KiB",
            b"GET /ready HTTP/1.1\r\nX-Big: " + b"a" * 64 * KIB + b"\r\n\r\n",
            431,
        ),
        (
            "header of 8 MiB",
            b"GET /ready HTTP/1.1\r\nX-Big: " + b"a" * 8192 * KIB + b"\r\n\r\n",
            431,
        ),
        ("3,000 small headers", b"GET /ready HTTP/1.1\r\n" + b"X-A: b\r\n" * 3000 + b"\r\n", 431),
        ("URL of 17 KiB", b"GET /ready?" + b"a" * 17 * KIB + b" HTTP/1.1\r\n\r\n", 414),
        ("URL of 1 MiB", b"GET /ready?" + b"a" * 1024 * KIB + b" HTTP/1.1\r\n\r\n", 414),
        ("no line end, 1 MiB", b"G" * 1024 * KIB, 414),
    ],
)
def test_oversized_heads_are_refused_and_cost_nothing(
    sidecar: RunningSidecar, what: str, request_bytes: bytes, expected: int
) -> None:
    before = rss_bytes(sidecar.process.pid)
    answer = exchange(port_of(sidecar), request_bytes)
    # The answer is sent at once; a client still sending may see the close as a reset instead.
    assert answer == b"RESET" or status_of(answer) == expected, (what, answer[:200])
    if answer != b"RESET":
        assert b"connection: close" in answer
    assert rss_bytes(sidecar.process.pid) - before < 4 * 1024 * KIB, what
    still_serving(sidecar)


def test_a_head_just_under_the_limit_is_served(sidecar: RunningSidecar) -> None:
    filler = b"a" * (MAX_HEAD_BYTES - 200)
    answer = exchange(
        port_of(sidecar), b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: " + filler + b"\r\n\r\n"
    )
    assert status_of(answer) == 200


def test_the_limit_applies_to_each_request_of_a_kept_alive_connection(
    sidecar: RunningSidecar,
) -> None:
    small = b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10 * KIB + b"\r\n\r\n"
    answer = exchange(port_of(sidecar), small * 5, answers=5)  # 50 KiB, 10 KiB per request
    assert answer.count(b"HTTP/1.1 200 OK") == 5


# --- malformed and odd requests ---------------------------------------------------------------
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS ClientHello
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"FOO /ready HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ready HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /r\xc3\xa9ady HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",  # both lengths: a smuggling attempt
        b"GET /ready HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_malformed_requests_are_400(sidecar: RunningSidecar, request_bytes: bytes) -> None:
    answer = exchange(port_of(sidecar), request_bytes)
    assert status_of(answer) == 400, answer[:200]
    still_serving(sidecar)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /ready HTTP/1.0\r\n\r\n",  # no Host
        b"GET /ready\r\n\r\n",  # no version
        b"GET http://elsewhere.example/ready HTTP/1.1\r\nHost: x\r\n\r\n",  # absolute form
        b"GET /ready HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        b"GET /ready HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100,
        b"GET /ready HTTP/1.1\r\nHost: x\r\nCookie: " + b"c=" + b"9" * 4000 + b"\r\n\r\n",
    ],
)
def test_odd_but_parseable_probe_requests_get_a_probe_answer(
    sidecar: RunningSidecar, request_bytes: bytes
) -> None:
    answer = exchange(port_of(sidecar), request_bytes, read_timeout=1.0)
    assert status_of(answer) == 200, answer[:200]


@pytest.mark.parametrize(
    "query",
    [
        "x=%00&&&=",
        "a=1&a=2&a=3",
        "%ff%fe=%c0%af",
        ";;;",
        "q=" + "%" * 100,
        "scope=cluster&worker_id=evil:1&expose_traces=true",  # settings cannot be set this way
        "é=ü&🚀",
        "&" * 2000,
    ],
)
@pytest.mark.parametrize("path", PROBES)
def test_odd_query_strings_are_harmless(sidecar: RunningSidecar, path: str, query: str) -> None:
    plain = httpx.get(f"{sidecar.url}{path}")
    odd = httpx.get(f"{sidecar.url}{path}?{query}")
    assert odd.status_code == plain.status_code == 200
    assert odd.json()["scope"] == "worker"
    assert odd.json().keys() == plain.json().keys()


def test_pipelined_requests_are_all_answered_in_order(sidecar: RunningSidecar) -> None:
    paths = ["/ready", "/live", "/healthz"] * 20
    requests = b"".join(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for path in paths)
    answer = exchange(port_of(sidecar), requests, answers=len(paths))
    assert answer.count(b"HTTP/1.1 200 OK") == len(paths)


def test_many_silent_connections_do_not_block_probes(sidecar: RunningSidecar) -> None:
    port = port_of(sidecar)
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    try:
        for _ in range(5):
            still_serving(sidecar)
    finally:
        for sock in sockets:
            sock.close()


# --- the head deadline, end to end (a real uvicorn, HEAD_TIMEOUT 0.5 s) ------------------------
async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def guarded_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """uvicorn with ``GuardedHttpToolsProtocol`` in a thread, HEAD_TIMEOUT 0.5 s."""
    monkeypatch.setattr(httpguard, "HEAD_TIMEOUT", 0.5)
    port = free_port()
    config = uvicorn.Config(
        _ok_app,
        host="127.0.0.1",
        port=port,
        http=GuardedHttpToolsProtocol,
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=30,  # longer than HEAD_TIMEOUT: the guard must do the closing
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    end = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < end, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed ``sock`` (reading and discarding), None if it did not."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def test_a_silent_connection_is_closed_by_the_real_server(guarded_server: int) -> None:
    """The guard wired into a real uvicorn on a socket; its timer logic is in test_httpguard.py."""
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        waited = closed_within(sock, 5.0)
    assert waited is not None, "the silent connection was left open"


# --- schemathesis over the OpenAPI schema -----------------------------------------------------
def probe_503_only(ctx: Any, response: Any, case: Any) -> bool | None:
    """No server error, except the documented 503 of /ready and /live."""
    del ctx
    status = int(response.status_code)
    if status >= 500 and not (status == 503 and case.path in PROBES):
        raise AssertionError(f"{case.method} {case.path} answered {status}")
    return None


@pytest.mark.parametrize("fault", [None, "silent"])
def test_every_operation_conforms_to_the_openapi_schema(
    sidecar: RunningSidecar, connect: FaultyConnect, fault: str | None
) -> None:
    """Healthy Connect (probes 200) and a silent one (probes 503): every response, headers
    and body, matches the schema; status codes are documented; no unintended 5xx."""
    connect.set_fault(fault)
    try:
        if fault is not None:
            end = time.monotonic() + 5
            while httpx.get(f"{sidecar.url}/ready").status_code != 503:
                assert time.monotonic() < end
                time.sleep(0.05)
        schema = schemathesis.openapi.from_url(f"{sidecar.url}/openapi.json")
        statuses: dict[str, set[int]] = {}
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert {operation.path for operation in operations} >= set(ROUTES) - {"/openapi.json"}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=10,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=sidecar.url,
                    excluded_checks=[not_a_server_error],
                    additional_checks=[probe_503_only],
                )
                statuses.setdefault(case.path, set()).add(response.status_code)

            check()
    finally:
        connect.set_fault(None)
    wanted = 503 if fault else 200
    assert statuses["/ready"] == {wanted}
    assert statuses["/status"] == {200}
    wait_ready(sidecar.url)


def test_nothing_here_left_the_sidecar_unwell(sidecar: RunningSidecar) -> None:
    still_serving(sidecar)
    assert httpx.get(f"{sidecar.url}/healthz").json()["ok"] is True
