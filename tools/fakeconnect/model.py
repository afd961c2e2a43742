"""``FakeConnect``: connectors and their states plus knobs that make Connect misbehave, answered as
Connect 3.9 would. In-process front end: ``FakeConnect.transport()`` (an ``httpx.MockTransport``);
on a socket: ``tools.fakeconnect.threaded.serve_fake``."""

import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from tools.fakeconnect import bodies

HEALTHY = (200, dict(bodies.HEALTHY))


@dataclass
class Canned:
    """A fixed answer for one path."""

    status_code: int
    body: bytes
    content_type: str = "application/json"


@dataclass
class FakeConnect:
    """Connectors and their states, plus knobs to make Connect misbehave."""

    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: tuple[int, dict[str, Any]] | None = HEALTHY  # None: a pre-3.9 worker (JSON 404)
    legacy: bool = False  # a pre-2.3 worker that ignores ?expand=status
    down: bool = False  # connection refused
    hang: bool = False  # accepts, never answers
    hang_paths: set[str] = field(default_factory=set)  # these paths never answer
    canned: dict[str, Canned] = field(default_factory=dict)  # path -> fixed answer
    credentials: tuple[str, str] | None = None  # require basic auth
    requests: list[httpx.Request] = field(default_factory=list)
    version: str = "3.9.0"
    # Restart POSTs (auto-restart): answered 202/204 as Connect does, unless told otherwise.
    restart_status: int | None = None  # answer every restart POST with this status (409, 500...)
    plan_status: int | None = None  # answer ?includeTasks&onlyFailed so (404/405: no KIP-745)
    restart_heals: bool = False  # an accepted restart sets what it restarts to RUNNING

    @property
    def posts(self) -> list[str]:
        """Every POST received, as ``"/path?query"``, in order."""
        return [
            request.url.raw_path.decode() for request in self.requests if request.method == "POST"
        ]

    def add(self, body: dict[str, Any]) -> None:
        self.connectors[body["name"]] = body

    def set_task(self, name: str, task: int, state: str, worker: str | None = None) -> None:
        entry = self.connectors[name]["tasks"][task]
        entry["state"] = state
        if worker is not None:
            entry["worker_id"] = worker

    def set_connector(self, name: str, state: str) -> None:
        self.connectors[name]["connector"]["state"] = state

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        """The MockTransport front end: every knob applies."""
        if self.down:
            self.requests.append(request)
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        path = request.url.raw_path.decode().split("?", 1)[0]
        if self.hang or path in self.hang_paths:
            self.requests.append(request)
            await asyncio.Event().wait()
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        """Record ``request`` and answer it (credentials, canned answers, then the routes)."""
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?", 1)[0]
        if self.credentials is not None and not self._authorized(request):
            return httpx.Response(401, content=b"User cannot access the resource.")
        if path in self.canned:
            canned = self.canned[path]
            return httpx.Response(
                canned.status_code,
                content=canned.body,
                headers={"content-type": canned.content_type},
            )
        return self._route(request, path)

    def _authorized(self, request: httpx.Request) -> bool:
        assert self.credentials is not None
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return bool(request.headers.get("authorization") == f"Basic {expected}")

    def _route(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "POST":
            return self._restart(request, path)
        if path == "/":
            return httpx.Response(200, json=dict(bodies.ROOT) | {"version": self.version})
        if path == "/health":
            if self.health is None:
                return httpx.Response(404, json=bodies.error(404, "HTTP 404 Not Found"))
            code, body = self.health
            return httpx.Response(code, json=body)
        if path == "/connectors":
            expand = request.url.params.get_list("expand")
            if "status" in expand and not self.legacy:
                return httpx.Response(200, json=bodies.expanded(self.connectors))
            return httpx.Response(200, json=list(self.connectors))
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "connectors" and parts[3] == "status":
            name = unquote(parts[2])
            if name not in self.connectors:
                return httpx.Response(
                    404, json=bodies.error(404, f"No status found for connector {name}")
                )
            return httpx.Response(200, json=self.connectors[name])
        if len(parts) == 4 and parts[1] == "connectors" and parts[3] == "config":
            name = unquote(parts[2])
            if name not in self.connectors:
                return httpx.Response(404, json=bodies.error(404, f"Connector {name} not found"))
            return httpx.Response(
                200, json={"name": name, "connector.class": "org.example.Connector"}
            )
        return httpx.Response(404, json=bodies.error(404, "HTTP 404 Not Found"))

    def _restart(self, request: httpx.Request, path: str) -> httpx.Response:
        """``POST /connectors/{name}/restart[?includeTasks&onlyFailed]`` and
        ``POST /connectors/{name}/tasks/{id}/restart``, as Connect answers them."""
        parts = path.split("/")
        is_connector = len(parts) == 4 and parts[1] == "connectors" and parts[3] == "restart"
        is_task = (
            len(parts) == 6
            and parts[1] == "connectors"
            and parts[3] == "tasks"
            and parts[5] == "restart"
        )
        if not (is_connector or is_task):
            return httpx.Response(405, json=bodies.error(405, "HTTP 405 Not Allowed"))
        name = unquote(parts[2])
        params = request.url.params
        # Connect < 3.0 ignores the KIP-745 parameters (restarts the connector instance only).
        modern = int(self.version.split(".", 1)[0]) >= 3
        plan = (
            is_connector
            and modern
            and (params.get("includeTasks") == "true" or params.get("onlyFailed") == "true")
        )
        if plan and self.plan_status is not None:
            return _error(self.plan_status)
        if self.restart_status is not None:
            return _error(self.restart_status)
        body = self.connectors.get(name)
        if body is None:
            return _error(404, f"Connector {name} not found")
        if is_task:
            task = int(parts[4])
            entry = next((t for t in body["tasks"] if t["id"] == task), None)
            if entry is None:
                return _error(404, f"Task {name}-{task} not found")
            if self.restart_heals:
                entry["state"] = "RUNNING"
            return httpx.Response(204)
        if not plan:
            if self.restart_heals:
                body["connector"]["state"] = "RUNNING"
            return httpx.Response(204)
        only_failed = params.get("onlyFailed") == "true"
        include_tasks = params.get("includeTasks") == "true"
        connector_restarts = not only_failed or body["connector"]["state"] == "FAILED"
        tasks = [
            t
            for t in (body["tasks"] if include_tasks else [])
            if not only_failed or t["state"] == "FAILED"
        ]
        plan_body = {
            "name": name,
            "connector": dict(body["connector"]),
            "tasks": [dict(t) for t in body["tasks"]],
            "type": body.get("type", "unknown"),
        }
        if connector_restarts:
            plan_body["connector"]["state"] = "RESTARTING"
        for task in plan_body["tasks"]:
            if any(t["id"] == task["id"] for t in tasks):
                task["state"] = "RESTARTING"
        if self.restart_heals:
            if connector_restarts:
                body["connector"]["state"] = "RUNNING"
            for t in tasks:
                t["state"] = "RUNNING"
        return httpx.Response(202, json=plan_body)


def _error(code: int, message: str | None = None) -> httpx.Response:
    return httpx.Response(code, json=bodies.error(code, message))
