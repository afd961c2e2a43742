"""The real thing: ``connect-probe`` as a process on a socket, probed with a real HTTP client."""

import signal
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect
from tools.fakeconnect.threaded import serve_fake
from tools.procs import run_sidecar, wait_for_status


@pytest.mark.process
def test_real_server_answers_probes_from_a_real_connect(tmp_path: Path) -> None:
    fake = FakeConnect()
    fake.add(status("orders-sink", tasks=[("RUNNING", THIS_WORKER)]))
    with serve_fake(fake) as connect_url:
        env = {
            "CONNECT_PROBE_CONNECT_URL": connect_url,
            "CONNECT_PROBE_WORKER_ID": THIS_WORKER,
            "CONNECT_PROBE_POLL_INTERVAL": "0.2",
        }
        with run_sidecar(env, tmp_path) as sidecar:
            ready = wait_for_status(f"{sidecar.url}/ready", 200)
            assert ready.status_code == 200
            assert ready.headers["content-type"] == "application/json"
            assert ready.json()["ok"] is True
            for path in ("/ready", "/live", "/status", "/metrics", "/healthz", "/nope"):
                answer = httpx.get(f"{sidecar.url}{path}")
                sent = parsedate_to_datetime(answer.headers["date"])  # RFC 9110 §6.6.1
                assert abs(sent.timestamp() - time.time()) < 5, (path, answer.headers["date"])
            head = httpx.head(f"{sidecar.url}/ready")
            assert (head.status_code, head.content) == (200, b"")
            assert httpx.get(f"{sidecar.url}/live").status_code == 200
            assert httpx.get(f"{sidecar.url}/status").json()["identity"]["matched"] == [THIS_WORKER]
            assert httpx.get(f"{sidecar.url}/healthz").json()["ok"] is True
            assert httpx.get(f"{sidecar.url}/openapi.json").status_code == 200

            fake.set_task("orders-sink", 0, "FAILED")
            failed = wait_for_status(f"{sidecar.url}/ready", 503)
            assert failed.status_code == 503
            assert failed.json()["reasons"][0]["connector"] == "orders-sink"
            assert httpx.head(f"{sidecar.url}/ready").status_code == 503

            started = time.monotonic()
            sidecar.process.send_signal(signal.SIGTERM)
            assert sidecar.process.wait(10) == 0
            assert time.monotonic() - started < 5
        log = sidecar.output()
        assert "orders-sink task 0 RUNNING→FAILED" in log
        assert "GET /ready" not in log  # no access log line per probe


@pytest.mark.process
def test_real_server_with_nothing_listening_answers_503_with_a_reason(tmp_path: Path) -> None:
    env = {"CONNECT_PROBE_CONNECT_URL": "http://127.0.0.1:9", "CONNECT_PROBE_POLL_INTERVAL": "0.2"}
    with run_sidecar(env, tmp_path) as sidecar:
        response = wait_for_status(f"{sidecar.url}/ready", 503)
        body = response.json()
        assert response.status_code == 503
        assert body["reasons"][0]["code"] == "connect_unreachable"
        assert "Connection refused" in body["reasons"][0]["message"]
        assert httpx.get(f"{sidecar.url}/live").status_code == 200  # startup grace
