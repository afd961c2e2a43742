"""A real sidecar process on 127.0.0.1, probed the way the kubelet probes it (kubeprobe.py):
GET, kube-probe User-Agent, Connection: close, 1 s timeout, at most 10 KiB of body read,
200-399 = success.
"""

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tools.deploycheck.kubeprobe import MAX_BODY_BYTES, ProbeResult, probe
from tools.fakeconnect.bodies import LONG_TRACE, status
from tools.fakeconnect.model import FakeConnect
from tools.fakeconnect.threaded import serve_fake, serve_handler
from tools.procs import RunningSidecar, run_sidecar

pytestmark = pytest.mark.process  # a real sidecar and fake Connect on 127.0.0.1

FAST = {"CONNECT_PROBE_POLL_INTERVAL": "0.2", "CONNECT_PROBE_TIMEOUT": "1", "POD_IP": "127.0.0.1"}


@contextlib.contextmanager
def connect_with(connectors: int, tasks: int, state: str) -> Iterator[str]:
    """A fake Connect on 127.0.0.1 whose connectors all run on it (worker 127.0.0.1:<port>, what
    a sidecar with POD_IP=127.0.0.1 detects); yields its URL."""
    fake = FakeConnect()
    with serve_fake(fake) as url:
        worker = url.removeprefix("http://")
        for index in range(connectors):
            fake.add(status(f"connector-{index}", state, worker, tasks, trace=LONG_TRACE))
        yield url


@pytest.fixture
def fake_connect() -> Iterator[str]:
    with connect_with(connectors=1, tasks=1, state="RUNNING") as url:
        yield url


def probe_until(url: str, status: int, seconds: float = 10.0) -> ProbeResult:
    """Probe like the kubelet until ``status`` comes back (the first polls take a moment)."""
    deadline = time.monotonic() + seconds
    result = probe(url)
    while result.status != status and time.monotonic() < deadline:
        time.sleep(0.1)
        result = probe(url)
    return result


def assert_kubelet_reads_it_whole(result: ProbeResult) -> dict[str, object]:
    assert result.error is None, result.error
    assert len(result.body) < MAX_BODY_BYTES, "the kubelet would cut this body at 10 KiB"
    body: dict[str, object] = json.loads(result.body)
    return body


@pytest.fixture
def sidecar_without_connect(tmp_path: Path) -> Iterator[RunningSidecar]:
    # Bound but never listening: connections are refused and nobody else can take the port.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        env = {**FAST, "CONNECT_PROBE_CONNECT_URL": f"http://127.0.0.1:{port}"}
        with run_sidecar(env, tmp_path) as sidecar:
            yield sidecar


def test_connect_down_ready_fails_live_holds(sidecar_without_connect: RunningSidecar) -> None:
    url = sidecar_without_connect.url
    ready = probe_until(f"{url}/ready", 503)
    assert ready.status == 503
    assert not ready.success
    body = assert_kubelet_reads_it_whole(ready)
    assert body["ok"] is False
    # STARTUP_GRACE: a worker that is not up yet is not restarted.
    live = probe(f"{url}/live")
    assert live.success, live
    assert_kubelet_reads_it_whole(live)
    assert probe(f"{url}/healthz").status == 200


def test_connect_up_ready_and_live_succeed(fake_connect: str, tmp_path: Path) -> None:
    env = {**FAST, "CONNECT_PROBE_CONNECT_URL": fake_connect}
    with run_sidecar(env, tmp_path) as sidecar:
        ready = probe_until(f"{sidecar.url}/ready", 200)
        assert ready.success, (ready, sidecar.output())
        assert assert_kubelet_reads_it_whole(ready)["ok"] is True
        assert probe(f"{sidecar.url}/live").success
        assert probe(f"{sidecar.url}/healthz").success


def test_many_failed_tasks_still_fit_the_kubelet_read_limit(tmp_path: Path) -> None:
    with connect_with(connectors=300, tasks=3, state="FAILED") as url:
        env = {**FAST, "CONNECT_PROBE_CONNECT_URL": url}
        with run_sidecar(env, tmp_path) as sidecar:
            ready = probe_until(f"{sidecar.url}/ready", 503)
            assert ready.status == 503, (ready, sidecar.output())
            body = assert_kubelet_reads_it_whole(ready)
            assert body["ok"] is False
            assert probe(f"{sidecar.url}/live").success, "connector states never fail /live"


# --- the emulator itself, against a plain stdlib server ---------------------------------------


class _Quirky(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/headers":
            self._send(200, json.dumps(dict(self.headers.items())).encode())
        elif self.path == "/big":
            self._send(200, b"x" * (3 * MAX_BODY_BYTES))
        elif self.path == "/elsewhere":
            self._send(302, b"", location="http://other.invalid/ready")
        elif self.path == "/same-host":
            self._send(302, b"", location="/headers")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        else:
            self._send(404, b"no")

    def _send(self, code: int, body: bytes, location: str | None = None) -> None:
        self.send_response(code)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # /slow: the probe has given up already, as it should.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def quirky() -> Iterator[str]:
    with serve_handler(_Quirky) as url:
        yield url


def test_emulator_sends_kubelet_headers(quirky: str) -> None:
    result = probe(f"{quirky}/headers")
    headers = {k.lower(): v for k, v in json.loads(result.body).items()}
    assert headers["user-agent"].startswith("kube-probe/")
    assert headers["connection"] == "close"
    assert headers["accept"] == "*/*"
    assert "accept-encoding" not in headers


def test_emulator_result_rules(quirky: str) -> None:
    big = probe(f"{quirky}/big")
    assert big.success
    assert len(big.body) == MAX_BODY_BYTES
    elsewhere = probe(f"{quirky}/elsewhere")
    assert elsewhere.success
    assert elsewhere.warning
    assert elsewhere.status == 302
    same = probe(f"{quirky}/same-host")
    assert same.success
    assert same.status == 200
    assert not same.warning
    assert not probe(f"{quirky}/missing").success
    slow = probe(f"{quirky}/slow", timeout=1.0)
    assert not slow.success
    assert slow.error is not None
