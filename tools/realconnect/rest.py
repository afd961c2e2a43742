"""A small client of the Kafka Connect REST API: drives a real worker in the tests and the demo."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import httpx

from tools.realconnect.wait import wait_until

JSONDict = dict[str, Any]

# Write requests are forwarded to the leader; during a rebalance they answer 409 (or 500 when a
# rebalance is expected): retried until this many seconds have passed.
WRITE_RETRY_SECONDS = 60.0


class ConnectError(RuntimeError):
    """Connect answered a request with an unexpected status."""


class ConnectClient:
    """Requests against one worker's REST API (``http://127.0.0.1:PORT``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- reads

    def health(self, timeout: float | None = None) -> tuple[int, JSONDict | None]:
        """``GET /health``: status code and body (None when not JSON, e.g. Jetty's HTML 404).

        While a worker starts, Connect holds ``/health`` up to 10 s before answering 503: pass a
        short ``timeout`` to get ``httpx.TimeoutException`` instead."""
        response = self._http.get("/health", timeout=timeout or self._http.timeout)
        try:
            body = response.json()
        except ValueError:
            body = None
        return response.status_code, body if isinstance(body, dict) else None

    def is_healthy(self, timeout: float | None = None) -> bool:
        try:
            return self.health(timeout)[0] == 200
        except httpx.HTTPError:
            return False

    def answers(self, timeout: float | None = None) -> bool:
        """``GET /connectors`` answers 200 (REST up; the group may not be joined yet)."""
        try:
            response = self._http.get("/connectors", timeout=timeout or self._http.timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def server_info(self) -> JSONDict:
        return cast(JSONDict, self._json("GET", "/", ok=(200,)))

    def connectors(self) -> list[str]:
        return cast(list[str], self._json("GET", "/connectors", ok=(200,)))

    def statuses(self) -> dict[str, JSONDict]:
        """Every connector's status (``?expand=status``), by name."""
        body = self._json("GET", "/connectors", params={"expand": "status"}, ok=(200,))
        return {str(name): entry["status"] for name, entry in body.items() if "status" in entry}

    def status(self, name: str) -> JSONDict | None:
        """A connector's status, None while it has none (404)."""
        response = self._http.get(f"/connectors/{name}/status")
        if response.status_code == 404:
            return None
        _check(response, (200,))
        return cast(JSONDict, response.json())

    # ---------------------------------------------------------------------------- writes

    def create(self, name: str, config: Mapping[str, str]) -> JSONDict:
        body = {"name": name, "config": dict(config)}
        return cast(JSONDict, self._write("POST", "/connectors", json=body, ok=(201,)))

    def pause(self, name: str) -> None:
        self._write("PUT", f"/connectors/{name}/pause", ok=(202,))

    def resume(self, name: str) -> None:
        self._write("PUT", f"/connectors/{name}/resume", ok=(202,))

    def stop(self, name: str) -> None:
        self._write("PUT", f"/connectors/{name}/stop", ok=(202, 204))

    def delete(self, name: str) -> None:
        self._write("DELETE", f"/connectors/{name}", ok=(204,))

    def restart(self, name: str, *, include_tasks: bool = False, only_failed: bool = False) -> None:
        params = {
            "includeTasks": str(include_tasks).lower(),
            "onlyFailed": str(only_failed).lower(),
        }
        self._write("POST", f"/connectors/{name}/restart", params=params, ok=(200, 202, 204))

    # ---------------------------------------------------------------------------- waits

    def wait_healthy(self, timeout: float = 60.0) -> None:
        wait_until(
            lambda: self.is_healthy(timeout=2.0), timeout=timeout, what=f"{self.url}/health 200"
        )

    def wait_for_state(
        self,
        name: str,
        connector: str | None = None,
        tasks: str | None = None,
        *,
        task_count: int | None = None,
        timeout: float = 30.0,
    ) -> JSONDict:
        """Waits until the connector is in ``connector`` state and every task in ``tasks``
        (and there are ``task_count`` tasks, when given); returns that status."""

        def matches() -> JSONDict | None:
            status = self.status(name)
            if status is None:
                return None
            if connector is not None and status["connector"]["state"] != connector:
                return None
            task_list = status["tasks"]
            if task_count is not None and len(task_list) != task_count:
                return None
            if tasks is not None and (not task_list or any(t["state"] != tasks for t in task_list)):
                return None
            return status

        return wait_until(
            matches,
            timeout=timeout,
            what=f"connector {name!r} state {connector} with tasks {tasks} (count {task_count})",
            describe=lambda: f"status now {self.status(name)}",
        )

    def wait_gone(self, name: str, timeout: float = 30.0) -> None:
        wait_until(
            lambda: name not in self.connectors() and self.status(name) is None,
            timeout=timeout,
            what=f"connector {name!r} to disappear",
        )

    # ---------------------------------------------------------------------------- plumbing

    def _json(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _check(response, ok)
        return response.json() if response.content else None

    def _write(self, method: str, path: str, *, ok: tuple[int, ...], **kwargs: Any) -> Any:
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        while True:
            response = self._http.request(method, path, **kwargs)
            retry = response.status_code == 409 or (
                response.status_code == 500 and "rebalance" in response.text.lower()
            )
            if not retry or time.monotonic() >= deadline:
                _check(response, ok)
                return response.json() if response.content else None
            time.sleep(0.25)


def _check(response: httpx.Response, ok: tuple[int, ...]) -> None:
    if response.status_code not in ok:
        raise ConnectError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:2000]}"
        )


class Connectors:
    """Creates connectors with unique names and deletes whichever still exist on :meth:`cleanup`
    (so one test's leftovers do not change the next test's verdicts)."""

    def __init__(self, client: ConnectClient, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.created: list[str] = []

    def create(self, config: Mapping[str, str], suffix: str = "") -> str:
        name = f"{self.prefix}-{len(self.created) + 1}{'-' + suffix if suffix else ''}"
        self.client.create(name, config)
        self.created.append(name)
        return name

    def cleanup(self) -> None:
        existing = set(self.client.connectors())
        for name in self.created:
            if name in existing:
                self.client.delete(name)
        for name in self.created:
            self.client.wait_gone(name)
        self.created.clear()
