"""The Connect client: auth, limits, and how each kind of failure is classified."""

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.connect.client import (
    ConnectBadResponse,
    ConnectClient,
    ConnectUnreachable,
    build_http_client,
)
from app.settings import Settings
from tools.fakeconnect.bodies import status
from tools.fakeconnect.model import FakeConnect
from tools.fakeconnect.threaded import serve_fake
from tools.sidecar import Sidecar
from tools.tls import self_signed, server_context

pytestmark = pytest.mark.anyio

PASSWORD = "s3cr:et:pa55"  # basic auth splits on the first ':' only, so passwords may hold more


async def test_basic_auth_is_sent_preemptively_with_colons_in_the_password() -> None:
    fake = FakeConnect(credentials=("probe", PASSWORD))
    fake.add(status("orders-sink"))
    async with Sidecar(fake, username="probe", password=PASSWORD) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
    expected = "Basic " + base64.b64encode(f"probe:{PASSWORD}".encode()).decode()
    assert all(request.headers["authorization"] == expected for request in fake.requests)


async def test_password_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    fake = FakeConnect(credentials=("probe", PASSWORD))
    async with Sidecar(fake, username="probe", password_file=secret) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200


async def test_wrong_password_is_a_clear_reason_and_never_shown() -> None:
    fake = FakeConnect(credentials=("probe", "right"))
    async with Sidecar(fake, username="probe", password=PASSWORD) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert body["reasons"][0]["code"] == "connect_auth"
        assert PASSWORD not in str(body)
        page = str(sidecar.status())
        assert PASSWORD not in page
        assert base64.b64encode(f"probe:{PASSWORD}".encode()).decode() not in page


async def test_responses_above_the_size_cap_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" + b"1," * 5000 + b"1]")

    settings = Settings(max_response_bytes=1000)
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        with pytest.raises(ConnectBadResponse, match="more than 1000 bytes"):
            await ConnectClient(http, settings).get("/connectors")


async def test_declared_oversize_is_refused_before_reading() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}", headers={"content-length": "999999999"})

    settings = Settings(max_response_bytes=1000)
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        with pytest.raises(ConnectBadResponse, match="MAX_RESPONSE_BYTES"):
            await ConnectClient(http, settings).get("/connectors")


@pytest.mark.process
async def test_refused_connection_names_the_os_error() -> None:
    settings = Settings(connect_url="http://127.0.0.1:9", timeout=2)
    async with build_http_client(settings) as http:
        with pytest.raises(ConnectUnreachable, match="Connection refused"):
            await ConnectClient(http, settings).get("/connectors")


async def test_unchanged_answers_are_parsed_once() -> None:
    fake = FakeConnect()
    fake.add(status("orders-sink"))
    settings = Settings()
    async with build_http_client(settings, fake.transport()) as http:
        client = ConnectClient(http, settings)
        digest, first = await client.fetch_statuses_if_changed(None)
        assert digest is not None
        assert first is not None
        assert await client.fetch_statuses_if_changed(digest) == (digest, None)
        fake.set_task("orders-sink", 0, "FAILED")
        new_digest, changed = await client.fetch_statuses_if_changed(digest)
        assert new_digest != digest
        assert changed is not None
        assert changed.connectors["orders-sink"].tasks[0].state == "FAILED"


@pytest.fixture(scope="module")
def self_signed_connect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Connect over HTTPS on 127.0.0.1 with a certificate nobody vouches for."""
    fake = FakeConnect()
    fake.add(status("orders-sink"))
    context = server_context(self_signed(tmp_path_factory.mktemp("tls")))
    with serve_fake(fake, context) as url:
        yield url


@pytest.mark.process
async def test_verification_off_accepts_a_self_signed_certificate(self_signed_connect: str) -> None:
    settings = Settings(connect_url=self_signed_connect, verify=False, timeout=5)
    async with build_http_client(settings) as http:
        statuses = await ConnectClient(http, settings).fetch_statuses()
    assert list(statuses.connectors) == ["orders-sink"]


@pytest.mark.process
async def test_verification_on_refuses_a_self_signed_certificate(self_signed_connect: str) -> None:
    """The counterpart: the same server fails by default, so the test above proves something."""
    settings = Settings(connect_url=self_signed_connect, timeout=5)
    async with build_http_client(settings) as http:
        with pytest.raises(ConnectUnreachable, match=r"(?i)certificate"):
            await ConnectClient(http, settings).fetch_statuses()
