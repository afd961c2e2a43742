"""A sidecar wired in-process to a ``FakeConnect`` and a ``FakeClock``: poll, read verdicts."""

import asyncio
import json
from types import TracebackType
from typing import Any, Self

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.answers import AnswerCache
from app.connect.client import ConnectClient, build_http_client
from app.core import Core, build_core
from app.identity import detect_identity, explicit_identity
from app.poller import Poller, PollObserver
from app.settings import Settings
from app.statuspage import status_body
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import THIS_WORKER
from tools.fakeconnect.model import FakeConnect


class Sidecar:
    """``async with Sidecar(fake, **settings) as sidecar: await sidecar.poll()``."""

    def __init__(
        self,
        fake: FakeConnect,
        clock: FakeClock | None = None,
        *,
        host_names: tuple[str, ...] | None = None,
        **overrides: Any,
    ) -> None:
        self.fake = fake
        self.clock = clock or FakeClock()
        values: dict[str, Any] = {"connect_url": "http://connect.local:8083"}
        if host_names is None:
            values["worker_id"] = THIS_WORKER
        values.update(overrides)
        self.settings = Settings(**values)
        self._host_names = host_names
        self._http: httpx.AsyncClient | None = None
        self.core: Core
        self.answers: AnswerCache
        self.poller: Poller

    async def __aenter__(self) -> Self:
        self._http = build_http_client(self.settings, self.fake.transport())
        if self.settings.worker_id is not None:
            identity = explicit_identity(self.settings.worker_id)
        else:
            identity = detect_identity(
                self.settings.connect_port(), self.settings.pod_ip, self._host_names or ()
            )
        self.core = build_core(
            self.settings,
            ConnectClient(self._http, self.settings),
            identity,
            self.clock,
            observers=self.observers(),
        )
        self.answers, self.poller = self.core.answers, self.core.poller
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._http is not None
        await self._http.aclose()

    def observers(self) -> tuple[PollObserver, ...]:
        """More per-poll observers, wired as the app wires them (see tests/test_metrics.py)."""
        return ()

    async def poll(self) -> None:
        await self.poller.poll_once()

    def probe(self, name: str) -> tuple[int, dict[str, Any]]:
        answer = self.answers.answer(name)
        return answer.status_code, json.loads(answer.body)

    def ready(self) -> tuple[int, dict[str, Any]]:
        return self.probe("ready")

    def live(self) -> tuple[int, dict[str, Any]]:
        return self.probe("live")

    def status(self) -> dict[str, Any]:
        page = status_body(self.answers, self.settings, self.clock, self.core.restarter)
        result: dict[str, Any] = json.loads(page)
        return result


def codes(body: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in body["reasons"]]


def until_polled(client: TestClient, polls: int = 1) -> None:
    """Wait, on the app's own event loop and without a wall clock, until the poller of the app
    under ``client`` (``app.main.create_app``) finished ``polls`` polls."""
    app = client.app
    assert isinstance(app, FastAPI)

    async def polled() -> None:
        for _ in range(100_000):  # yields, not seconds: a MockTransport poll takes a few
            core = app.state.runtime.core
            if core is not None and core.poller.state.polls >= polls:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"fewer than {polls} polls after 100,000 turns of the event loop")

    client.portal.call(polled)  # type: ignore[union-attr]
