"""The ASGI app with its lifespan: routes, bodies, and the never-500 rule."""

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.monitor import Monitor
from app.settings import Settings
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect


@pytest.fixture
def fake() -> FakeConnect:
    return FakeConnect()


def client_for(fake: FakeConnect, **overrides: object) -> TestClient:
    settings = Settings(worker_id=THIS_WORKER, poll_interval=0.05, **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings, transport=fake.transport()))


def first_poll(client: TestClient) -> None:
    deadline = time.monotonic() + 5
    while client.get("/status").json()["poll"]["polls"] == 0:
        assert time.monotonic() < deadline, "no poll within 5 s"
        time.sleep(0.01)


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

        def broken(self: Monitor, probe: str) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(Monitor, "answer", broken)
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
    app = create_app(
        Settings(worker_id=THIS_WORKER, poll_interval=0.05), transport=fake.transport()
    )
    with TestClient(app) as client:
        first_poll(client)
        runtime = app.state.runtime
    assert runtime.task is not None
    assert runtime.task.done()
    polls = len(fake.requests)
    time.sleep(0.1)  # would be several polls if the loop were still running
    assert len(fake.requests) == polls
