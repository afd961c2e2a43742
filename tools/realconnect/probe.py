"""Run the sidecar (``connect-probe``) as a real process, configured by environment like a user."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from tools.realconnect.cluster import free_port
from tools.realconnect.procs import ManagedProcess
from tools.realconnect.wait import GiveUp, WaitTimeout, wait_until

BIN_ENV = "CONNECT_PROBE_BIN"
ENV_PREFIX = "CONNECT_PROBE_"

# Quick settings for tests: poll often, short client timeout, grace values small enough to watch.
FAST_SETTINGS: dict[str, str] = {
    "POLL_INTERVAL": "0.5",
    "TIMEOUT": "3",
    "MAX_AGE": "10",
    "TRANSIENT_GRACE": "5",
    "LIVE_GRACE": "5",
    "LOG_LEVEL": "INFO",
}


def probe_executable() -> str:
    """``$CONNECT_PROBE_BIN``, else ``connect-probe`` next to this Python, else on PATH."""
    override = os.environ.get(BIN_ENV)
    if override:
        return override
    beside = Path(sys.executable).parent / "connect-probe"
    if beside.exists():
        return str(beside)
    found = shutil.which("connect-probe")
    if found:
        return found
    raise FileNotFoundError(
        "connect-probe not found (next to this Python, on PATH or in $CONNECT_PROBE_BIN): "
        "run `make install` first"
    )


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the sidecar."""

    code: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.body.get("reasons") or [])

    @property
    def codes(self) -> list[str]:
        return [str(reason.get("code")) for reason in self.reasons]

    def reason_for(
        self, connector: str, *, task: int | None = None, state: str | None = None
    ) -> dict[str, Any] | None:
        """The reason about ``connector`` (its ``task``, or the connector instance), if any."""
        for reason in self.reasons:
            if reason.get("connector") != connector or reason.get("task") != task:
                continue
            if state is None or reason.get("state") == state:
                return reason
        return None

    def __str__(self) -> str:
        summary = self.body.get("summary", "")
        return f"{self.code} {summary!s} reasons={self.reasons}"


class Probe:
    """One ``connect-probe`` process on ``127.0.0.1:<free port>``."""

    def __init__(
        self,
        name: str,
        connect_url: str,
        log_path: Path,
        *,
        settings: Mapping[str, str] | None = None,
        port: int | None = None,
        executable: str | None = None,
    ) -> None:
        self.name = name
        self.executable = executable or probe_executable()
        self.connect_url = connect_url
        self._auto_port = port is None
        self.port = port or free_port()
        self.log_path = log_path
        # Environment: ours minus any CONNECT_PROBE_* the caller had, plus the given settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        env.pop("POD_IP", None)
        self.settings = {
            **FAST_SETTINGS,
            **{key.removeprefix(ENV_PREFIX): value for key, value in (settings or {}).items()},
            "CONNECT_URL": connect_url,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        env.update({ENV_PREFIX + key: value for key, value in self.settings.items()})
        self.env = env
        self.proc: ManagedProcess | None = None
        self._http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", timeout=10.0, trust_env=False
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Probe:
        """Starts the process and waits until it serves ``/healthz`` (on another free port if
        the chosen one was taken meanwhile, unless the port was given)."""
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except GiveUp as exc:
                taken = "address already in use" in str(exc).lower()
                if not (taken and self._auto_port) or attempt == 2:
                    raise
                self._use_port(free_port())
        raise AssertionError("unreachable")

    def _use_port(self, port: int) -> None:
        self.port = port
        self.settings["PORT"] = str(port)
        self.env[ENV_PREFIX + "PORT"] = str(port)
        self._http.close()
        self._http = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def _start_once(self, timeout: float) -> Probe:
        self.proc = ManagedProcess(self.name, [self.executable], self.log_path, env=self.env)
        proc = self.proc

        def serving() -> bool:
            if not proc.alive:
                raise GiveUp(
                    f"{self.name} exited with {proc.returncode}; log {self.log_path}:\n"
                    f"{proc.log_tail()}"
                )
            return self._http.get("/healthz").status_code in (200, 503)

        try:
            wait_until(serving, timeout=timeout, interval=0.05, what=f"{self.name} to serve")
        except BaseException:
            proc.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self._http.close()

    def get(self, path: str) -> Answer:
        response = self._http.get(path)
        try:
            body = response.json()
        except ValueError:
            body = {"_text": response.text}
        return Answer(response.status_code, body if isinstance(body, dict) else {"_body": body})

    def ready(self) -> Answer:
        return self.get("/ready")

    def live(self) -> Answer:
        return self.get("/live")

    def status(self) -> Answer:
        return self.get("/status")

    def wait_for(self, path: str, code: int, *, timeout: float = 20.0) -> Answer:
        """Polls ``path`` until it answers ``code``; returns that answer."""
        return self.wait_answer(path, lambda a: a.code == code, what=f"-> {code}", timeout=timeout)

    def wait_answer(
        self,
        path: str,
        matches: Callable[[Answer], bool],
        *,
        what: str,
        timeout: float = 20.0,
    ) -> Answer:
        """Polls ``path`` until ``matches(answer)``; returns that answer."""
        last: list[Answer] = []

        def check() -> Answer | None:
            if self.proc is not None and not self.proc.alive:
                raise GiveUp(f"{self.name} exited with {self.proc.returncode}: {self.log_path}")
            answer = self.get(path)
            last[:] = [answer]
            return answer if matches(answer) else None

        try:
            return wait_until(check, timeout=timeout, interval=0.1, what=f"{path}: {what}")
        except WaitTimeout as exc:
            seen = last[0] if last else "nothing"
            raise WaitTimeout(f"{self.name}: {exc}; last answer {seen}") from None

    def wait_reason(
        self,
        connector: str,
        *,
        task: int | None = None,
        state: str,
        timeout: float = 20.0,
    ) -> tuple[Answer, dict[str, Any]]:
        """Waits until ``/ready`` is 503 naming ``connector`` (or its ``task``) in ``state``."""
        answer = self.wait_answer(
            "/ready",
            lambda a: a.code == 503 and a.reason_for(connector, task=task, state=state) is not None,
            what=f"503 naming {connector!r} task {task} {state}",
            timeout=timeout,
        )
        reason = answer.reason_for(connector, task=task, state=state)
        assert reason is not None
        return answer, reason

    def wait_ready(self, ok: bool = True, *, timeout: float = 20.0) -> Answer:
        return self.wait_for("/ready", 200 if ok else 503, timeout=timeout)

    def wait_live(self, ok: bool = True, *, timeout: float = 20.0) -> Answer:
        return self.wait_for("/live", 200 if ok else 503, timeout=timeout)
