"""A fake Kafka Connect REST API for ``httpx.MockTransport``, fed with recorded response shapes,
and a clock the tests move by hand."""

import asyncio
import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

DATA = Path(__file__).parent / "data"

HEALTHY = (200, {"status": "healthy", "message": "Worker has completed startup and is ready."})


def load(prefix: str) -> Any:
    """A file from tests/data by its number prefix, e.g. ``load("04")``."""
    matches = sorted(DATA.glob(f"{prefix}-*.json"))
    assert len(matches) == 1, f"expected one example starting with {prefix}-, got {matches}"
    return json.loads(matches[0].read_text(encoding="utf-8"))


def status(
    name: str,
    state: str = "RUNNING",
    worker: str = "10.0.0.1:8083",
    tasks: list[tuple[str, str]] | None = None,
    kind: str = "sink",
) -> dict[str, Any]:
    """A ``ConnectorStateInfo`` body; ``tasks`` is a list of (state, worker_id)."""
    task_list = (
        [{"id": 0, "state": "RUNNING", "worker_id": worker}]
        if tasks is None
        else [
            {"id": index, "state": task_state, "worker_id": task_worker}
            | (
                {"trace": f"org.example.Boom: task {index} failed\n\tat x.y(Z.java:1)"}
                if task_state == "FAILED"
                else {}
            )
            for index, (task_state, task_worker) in enumerate(tasks)
        ]
    )
    connector: dict[str, Any] = {"state": state, "worker_id": worker}
    if state == "FAILED":
        connector["trace"] = "org.example.ConnectorBoom: cannot start\n\tat a.b(C.java:2)"
    return {"name": name, "connector": connector, "tasks": task_list, "type": kind}


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
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        path = request.url.raw_path.decode().split("?", 1)[0]
        if self.hang or path in self.hang_paths:
            await asyncio.Event().wait()
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
            return httpx.Response(
                200, json={"version": self.version, "commit": "abc", "kafka_cluster_id": "c1"}
            )
        if path == "/health":
            if self.health is None:
                return httpx.Response(
                    404, json={"error_code": 404, "message": "HTTP 404 Not Found"}
                )
            code, body = self.health
            return httpx.Response(code, json=body)
        if path == "/connectors":
            expand = request.url.params.get_list("expand")
            if "status" in expand and not self.legacy:
                return httpx.Response(
                    200, json={name: {"status": body} for name, body in self.connectors.items()}
                )
            return httpx.Response(200, json=list(self.connectors))
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "connectors" and parts[3] == "status":
            name = unquote(parts[2])
            if name not in self.connectors:
                return httpx.Response(
                    404,
                    json={"error_code": 404, "message": f"No status found for connector {name}"},
                )
            return httpx.Response(200, json=self.connectors[name])
        if len(parts) == 4 and parts[1] == "connectors" and parts[3] == "config":
            name = unquote(parts[2])
            if name not in self.connectors:
                return _error(404, f"Connector {name} not found")
            return httpx.Response(
                200, json={"name": name, "connector.class": "org.example.Connector"}
            )
        return httpx.Response(404, json={"error_code": 404, "message": "HTTP 404 Not Found"})

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
            return httpx.Response(405, json={"error_code": 405, "message": "HTTP 405 Not Allowed"})
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
    return httpx.Response(
        code, json={"error_code": code, "message": message or f"HTTP {code} answered on purpose"}
    )


class FakeClock:
    """Monotonic and wall time that move only when told to."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_790_000_000.0) -> None:
        self._mono = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._mono + self._wall_offset

    def advance(self, seconds: float) -> None:
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        """Time passes at once; the task still yields, as a real sleep would."""
        self.sleeps.append(seconds)
        self._mono += max(0.0, seconds)
        await asyncio.sleep(0)


Handler = Callable[[httpx.Request], httpx.Response]
