"""The ASGI app with its lifespan: routes, bodies, and the never-500 rule."""

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.answers import AnswerCache
from app.main import create_app
from app.settings import Settings
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect
from tools.sidecar import until_polled


@pytest.fixture
def fake() -> FakeConnect:
    return FakeConnect()


def client_for(fake: FakeConnect, **overrides: object) -> TestClient:
    """The app with its lifespan; its poller polls once, then sleeps on a clock nobody moves."""
    settings = Settings(worker_id=THIS_WORKER, **overrides)  # type: ignore[arg-type]
    app = create_app(settings, transport=fake.transport(), clock=FakeClock(instant=False))
    return TestClient(app)


def first_poll(client: TestClient) -> None:
    until_polled(client)


@pytest.fixture
def client(fake: FakeConnect) -> Iterator[TestClient]:
    with client_for(fake) as test_client:
        yield test_client


def test_thousands_of_failing_tasks_keep_the_body_under_10_kib(fake: FakeConnect) -> None:
    for index in range(300):
        fake.add(status(f"sink-{index:04d}-" + "x" * 100, tasks=[("FAILED", THIS_WORKER)] * 10))
    with client_for(fake) as client:
        first_poll(client)
        response = client.get("/ready")
        assert response.status_code == 503
        assert len(response.content) < 10 * 1024
        body = response.json()
        assert body["counts"]["unhealthy"] == 3000
        assert len(body["reasons"]) + body["omitted"] == 3000
        assert len(body["reasons"]) >= 10


def test_probe_answers_503_not_500_when_judging_fails(
    fake: FakeConnect, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client_for(fake) as client:
        first_poll(client)

        def broken(self: AnswerCache, probe: str) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(AnswerCache, "answer", broken)
        for path in ("/ready", "/live"):
            response = client.get(path)
            assert response.status_code == 503
            assert response.json()["reasons"][0]["code"] == "internal_error"


def test_head_and_get_agree(client: TestClient) -> None:
    first_poll(client)
    for path in ("/ready", "/live", "/healthz", "/status"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code
        assert head.content == b""


def test_status_is_always_200_and_hides_secrets(fake: FakeConnect) -> None:
    fake.down = True
    with client_for(fake, username="probe", password="top:secret") as client:
        first_poll(client)
        response = client.get("/status")
        assert response.status_code == 200
        page = response.json()
        assert page["settings"]["password"] == "<set>"
        assert "top:secret" not in response.text
        assert page["poll"]["error"]["code"] == "connect_unreachable"


def test_openapi_documents_the_probes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/ready", "/live", "/healthz", "/status"):
        assert path in schema["paths"]
    assert set(schema["paths"]["/ready"]["get"]["responses"]) >= {"200", "503"}


def test_lifespan_stops_the_poller_and_closes_the_client(fake: FakeConnect) -> None:
    clock = FakeClock()  # instant sleeps: the poller polls flat out until the lifespan ends
    app = create_app(Settings(worker_id=THIS_WORKER), transport=fake.transport(), clock=clock)
    with TestClient(app) as client:
        until_polled(client, polls=3)
        runtime = app.state.runtime
    assert runtime.task is not None
    assert runtime.task.done()
    assert runtime.task.cancelled()
    assert runtime.core.poller.state.polls >= 3


def test_the_poll_loop_runs_on_the_injected_clock(fake: FakeConnect) -> None:
    """POLL_INTERVAL is measured on the app's clock: no poll until it has passed, then one."""
    clock = FakeClock(instant=False)
    settings = Settings(worker_id=THIS_WORKER, poll_interval=5)
    with TestClient(create_app(settings, transport=fake.transport(), clock=clock)) as client:
        until_polled(client)
        poller = client.app.state.runtime.core.poller  # type: ignore[attr-defined]
        assert client.portal is not None
        client.portal.call(turn_the_loop)
        assert clock.sleeps == [5.0]
        client.portal.call(clock.advance, 4.9)
        client.portal.call(turn_the_loop)
        assert poller.state.polls == 1
        client.portal.call(clock.advance, 0.1)
        until_polled(client, polls=2)
        client.portal.call(turn_the_loop)
        assert clock.sleeps == [5.0, 5.0]


async def turn_the_loop() -> None:
    """Give every ready task many turns (no time passes on the fake clock)."""
    for _ in range(1000):
        await asyncio.sleep(0)
