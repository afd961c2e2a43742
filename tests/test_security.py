"""What the sidecar reveals and what it sends: traces, secrets, connector names in URLs and logs.

* Probe bodies (/ready, /live) carry a trace's first line only; /status the full trace only with
  CONNECT_PROBE_EXPOSE_TRACES=true. Traces can hold host names, SQL, record contents.
* The password, the Authorization header it makes and the TLS key never appear in a log line, a
  body, an exception's text or ``--help``: a real process is run with a wrong password over
  mutual TLS and everything it says is searched.
* Connector names (which Connect takes from whoever creates connectors) are escaped in every URL
  the sidecar builds and in every log line.
"""

import base64
import http.server
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import app
from app.connect.client import ConnectClient, ConnectError, build_http_client, path_segment
from app.logs import safe
from app.settings import Settings
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect
from tools.fakeconnect.threaded import serve_handler
from tools.procs import SIDECAR, run_sidecar
from tools.sidecar import Sidecar
from tools.tls import TlsFiles, self_signed, server_context

SECRET = "Pa55-w0rd:zq9-never-shown"  # a test value that must never surface
USER = "probe"
AUTHORIZATION = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
TRACE = (
    "org.apache.kafka.connect.errors.ConnectException: sink failed\n"
    "\tat com.example.Jdbc.put(Jdbc.java:42) host=db-7.secret-host.internal password=hunter2\n"
    "Caused by: java.sql.SQLException: INSERT INTO customers VALUES ('alice@example.com')"
)
NASTY_NAMES = (
    ".",
    "..",
    "a/b",
    "../../admin",
    "100%",
    "%2F",
    "?x=1#frag",
    "with space",
    "tab\there",
    "ünïcødé-连接器-🚀",
    "new\nline",
    "\x1b[31mred",
    "x" * 10_000,
)


# --- traces -----------------------------------------------------------------------------------
def failed_with_trace(fake: FakeConnect) -> None:
    body = status("orders-sink", tasks=[("FAILED", THIS_WORKER)])
    body["tasks"][0]["trace"] = TRACE
    body["connector"]["trace"] = TRACE
    body["connector"]["state"] = "FAILED"
    fake.add(body)


@pytest.mark.anyio
async def test_probe_bodies_carry_only_the_first_line_of_a_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConnect()
    failed_with_trace(fake)
    caplog.set_level(logging.DEBUG)
    async with Sidecar(fake, live_fail_states="FAILED", live_grace=0, startup_grace=0) as sidecar:
        await sidecar.poll()
        for probe in ("ready", "live"):
            code, body = sidecar.probe(probe)
            assert code == 503
            traces = [reason["trace"] for reason in body["reasons"] if "trace" in reason]
            assert traces, body
            assert set(traces) == {TRACE.split("\n", 1)[0]}
            text = json.dumps(body)
            assert "secret-host" not in text
            assert "alice@example.com" not in text
        page = json.dumps(sidecar.status())
        assert "secret-host" not in page
        assert "alice@example.com" not in page
    assert "secret-host" not in caplog.text  # the change log line has the first line only
    assert "sink failed" in caplog.text


@pytest.mark.anyio
async def test_status_shows_full_traces_only_when_exposed() -> None:
    fake = FakeConnect()
    failed_with_trace(fake)
    async with Sidecar(fake, expose_traces=True) as sidecar:
        await sidecar.poll()
        page = sidecar.status()
        tasks = page["connectors"][0]["tasks"]
        assert tasks[0]["trace"] == TRACE
        assert page["connectors"][0]["connector"]["trace"] == TRACE
        _, body = sidecar.ready()
        assert "secret-host" not in json.dumps(body)  # probes stay cut even then


def test_expose_traces_is_off_by_default() -> None:
    assert Settings().expose_traces is False


# --- connector names in URLs ------------------------------------------------------------------
@pytest.mark.parametrize("name", NASTY_NAMES, ids=lambda name: repr(name[:20]))
def test_a_connector_name_is_always_one_path_segment(name: str) -> None:
    segment = path_segment(name)
    assert "/" not in segment
    assert segment not in (".", "..")
    client = httpx.Client(base_url="http://connect:8083")
    request = client.build_request("GET", f"/connectors/{segment}/status")
    raw = request.url.raw_path.decode("ascii")
    assert raw == f"/connectors/{segment}/status"  # no dot-segment removal, no re-encoding
    assert raw.split("/")[2] == segment


@pytest.mark.anyio
async def test_legacy_status_requests_reach_each_connector_by_its_exact_name() -> None:
    fake = FakeConnect(legacy=True)  # Connect < 2.3: one GET per connector
    for name in NASTY_NAMES:
        fake.add(status(name))
    settings = Settings()
    async with build_http_client(settings, fake.transport()) as http:
        statuses = await ConnectClient(http, settings).fetch_statuses()
    assert statuses.legacy_api
    assert statuses.malformed == {}
    assert set(statuses.connectors) == set(NASTY_NAMES)
    paths = {request.url.raw_path.decode() for request in fake.requests}
    for name in NASTY_NAMES:
        quoted = quote(name, safe="")
        if quoted in (".", ".."):
            quoted = quoted.replace(".", "%2E")
        assert f"/connectors/{quoted}/status" in paths


@pytest.mark.anyio
async def test_restart_requests_escape_the_name() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method + " " + request.url.raw_path.decode())
        return httpx.Response(202)

    settings = Settings()
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        client = ConnectClient(http, settings)
        await client.restart_connector("..", with_failed_tasks=False)
        await client.restart_task("a/b?c", 3)
    assert seen == [
        "POST /connectors/%2E%2E/restart",
        "POST /connectors/a%2Fb%3Fc/tasks/3/restart",
    ]


# --- connector names in log lines -------------------------------------------------------------
@pytest.mark.anyio
async def test_connector_names_cannot_forge_or_flood_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConnect()
    # The logging names the first few changed objects one by one: put the forgers first.
    for name in sorted(NASTY_NAMES, key=lambda name: ("\n" not in name, "\x1b" not in name)):
        fake.add(status(name, tasks=[("FAILED", THIS_WORKER)]))
    caplog.set_level(logging.DEBUG)
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 503
        fake.down = True
        await sidecar.poll()
    messages = [record.getMessage() for record in caplog.records]
    assert messages
    for message in messages:
        assert "\n" not in message
        assert "\x1b" not in message
        assert len(message) < 2_000
    assert any("new\\nline" in message for message in messages)
    assert any("\\x1b[31mred" in message for message in messages)


def test_safe_escapes_and_bounds() -> None:
    assert safe("a\nb\x1b[31m\u2028") == "a\\nb\\x1b[31m\\u2028"
    assert len(safe("x" * 10_000)) == 300
    assert safe("ünïcødé 连接器") == "ünïcødé 连接器"


# --- secrets ----------------------------------------------------------------------------------
def forbidden(key_pem: str) -> list[str]:
    """Every form of the secrets that must never surface."""
    key_lines = [line for line in key_pem.splitlines() if line and not line.startswith("-----")]
    return [SECRET, AUTHORIZATION, f"Basic {AUTHORIZATION}", *key_lines[:3], "PRIVATE KEY"]


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret[:12]}... appears in {where}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, used by both ends (server and client)."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@dataclass
class TlsConnect:
    """HTTPS Connect that wants a client certificate and other credentials: always 401."""

    url: str
    authorizations: list[str] = field(default_factory=list)
    peer_certs: int = 0


@pytest.fixture
def tls_connect(tls: TlsFiles) -> Iterator[TlsConnect]:
    record = TlsConnect(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            record.authorizations.append(self.headers.get("Authorization", ""))
            if self.connection.getpeercert() is not None:
                record.peer_certs += 1
            body = b"User cannot access the resource."
            self.send_response(401)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_handler(Handler, server_context(tls, client_cert=True)) as url:
        record.url = url
        yield record


@pytest.mark.process
def test_a_real_process_with_a_wrong_password_over_mutual_tls_reveals_no_secret(
    tls: TlsFiles, tls_connect: TlsConnect, tmp_path: Path
) -> None:
    secrets = forbidden(tls.key_pem)
    password_file = tmp_path / "password"
    password_file.write_text(SECRET + "\n")
    env = {
        "CONNECT_PROBE_CONNECT_URL": tls_connect.url,
        "CONNECT_PROBE_USERNAME": USER,
        "CONNECT_PROBE_PASSWORD_FILE": str(password_file),
        "CONNECT_PROBE_CA_FILE": str(tls.cert),
        "CONNECT_PROBE_CERT_FILE": str(tls.cert),
        "CONNECT_PROBE_KEY_FILE": str(tls.key),
        "CONNECT_PROBE_POLL_INTERVAL": "0.2",
        "CONNECT_PROBE_TIMEOUT": "2",
        "CONNECT_PROBE_LOG_LEVEL": "DEBUG",
    }
    with run_sidecar(env, tmp_path) as sidecar:
        end = time.monotonic() + 10
        while True:
            ready = httpx.get(f"{sidecar.url}/ready")
            if ready.json()["reasons"][0]["code"] == "connect_auth" or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert ready.json()["reasons"][0]["code"] == "connect_auth", ready.text
        bodies = {
            path: httpx.get(f"{sidecar.url}{path}").text
            for path in ("/ready", "/live", "/status", "/healthz", "/metrics", "/openapi.json")
        }
    log = sidecar.output()
    # The secret was really in play: sent (preemptively) over a mutually authenticated channel.
    assert f"Basic {AUTHORIZATION}" in tls_connect.authorizations
    assert tls_connect.peer_certs > 0
    assert "401" in log
    assert_clean(log, secrets, "the log")
    for path, text in bodies.items():
        assert_clean(text, secrets, path)
    assert json.loads(bodies["/status"])["settings"]["password"] is None  # PASSWORD unset here


@pytest.mark.process
def test_the_password_env_and_key_file_never_reach_help_check_or_errors(
    tls: TlsFiles, tmp_path: Path
) -> None:
    secrets = forbidden(tls.key_pem)
    env = {
        "PATH": "/usr/bin:/bin",
        "CONNECT_PROBE_CONNECT_URL": "https://127.0.0.1:9",
        "CONNECT_PROBE_USERNAME": USER,
        "CONNECT_PROBE_PASSWORD": SECRET,
        "CONNECT_PROBE_CA_FILE": str(tls.cert),
        "CONNECT_PROBE_CERT_FILE": str(tls.cert),
        "CONNECT_PROBE_KEY_FILE": str(tls.key),
        "CONNECT_PROBE_TIMEOUT": "1",
    }

    def run(*args: str, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(SIDECAR), *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout + done.stderr

    assert_clean(run("--help"), secrets, "--help")
    assert_clean(run("check", "--help"), secrets, "check --help")
    checked = run("check", "ready")
    assert "connect_unreachable" in checked
    assert_clean(checked, secrets, "check ready")
    refused = run("check", "ready", "--password", SECRET)
    assert "--password is not accepted" in refused  # env var or file only
    assert_clean(refused, secrets, "check with --password")
    assert_clean(run("--password=" + SECRET), secrets, "--password=")
    # Broken TLS material: a one-line error naming the variables, not the file's contents.
    bad_key = tmp_path / "bad-key.pem"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\n" + SECRET + "\n-----END PRIVATE KEY-----\n")
    broken = run("check", "ready", extra={"CONNECT_PROBE_KEY_FILE": str(bad_key)})
    assert "CONNECT_PROBE_KEY_FILE" in broken
    assert_clean(broken, secrets, "the TLS error")
    # Invalid settings next to the password: the message names variables, never values.
    invalid = run("check", "ready", extra={"CONNECT_PROBE_TIMEOUT": SECRET})
    assert "CONNECT_PROBE_TIMEOUT" in invalid
    assert_clean(invalid, secrets, "a validation error")
    bad_user = run("check", "ready", extra={"CONNECT_PROBE_USERNAME": "a:b"})
    assert_clean(bad_user, secrets, "a validation error")


@pytest.mark.anyio
async def test_connect_errors_never_carry_the_credentials() -> None:
    """Every kind of failure a poll can meet, with credentials set: exception text is clean."""
    answers: list[httpx.Response | Exception] = [
        httpx.Response(401, text="nope"),
        httpx.Response(403, json={"error_code": 403, "message": f"bad {USER}"}),
        httpx.Response(500, json={"error_code": 500, "message": "boom"}),
        httpx.Response(302, headers={"location": "http://elsewhere/"}),
        httpx.Response(200, content=b"not json"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("garbled"),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    settings = Settings(username=USER, password=SECRET, timeout=2)
    secrets = [SECRET, AUTHORIZATION]
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        client = ConnectClient(http, settings)
        while answers:
            with pytest.raises(ConnectError) as caught:
                await client.fetch_statuses()
            error = caught.value
            assert_clean(str(error), secrets, f"{type(error).__name__}")
            # What a log line with the exception shows: the error alone, no chained httpx
            # exception (whose request holds the Authorization header).
            shown = "".join(traceback.format_exception(error))
            assert_clean(shown, secrets, "the logged traceback")
            assert "During handling of the above exception" not in shown
            assert "was the direct cause" not in shown
            answers.pop(0)
    assert_clean(repr(settings), secrets, "repr(Settings)")
    assert_clean(str(settings.public_view()), secrets, "public_view")


@pytest.mark.process
def test_the_process_tests_run_this_checkout() -> None:
    """``connect-probe``, which the process tests start, runs this interpreter on this checkout's
    ``app``: not another installation that would pass or fail for reasons of its own."""
    assert os.access(SIDECAR, os.X_OK), f"{SIDECAR} missing: make install-dev"
    shebang = SIDECAR.read_text().splitlines()[0].removeprefix("#!").split()[0]
    assert Path(shebang).resolve() == Path(sys.executable).resolve()
    where = subprocess.run(
        [shebang, "-c", "import app; print(app.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        cwd="/",
    ).stdout.strip()
    assert Path(where).resolve().parent == Path(app.__file__).resolve().parent
