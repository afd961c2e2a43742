"""Processes on 127.0.0.1: a free port, start and stop by PID, wait until serving, read memory.

For tests, the bench and the deploy checks (run with the project's virtualenv).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SIDECAR = Path(sys.executable).parent / "connect-probe"
"""The ``connect-probe`` console script of the running virtualenv."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int, keys: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, int]:
    """Fields of ``/proc/PID/status`` as integers (memory fields are in KiB), e.g. VmRSS, VmHWM
    (peak RSS), RssAnon, Threads."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            values[key] = int(value.split()[0])
    missing = set(keys) - set(values)
    if missing:
        raise LookupError(f"/proc/{pid}/status has no {sorted(missing)}")
    return values


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` used so far (utime + stime of ``/proc/PID/stat``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` now, in bytes."""
    return proc_status(pid, ("VmRSS",))["VmRSS"] * 1024


def stop_process(process: "subprocess.Popen[bytes]", grace: float = 10.0) -> None:
    """SIGTERM by PID, SIGKILL after ``grace`` seconds; waits for the exit either way."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(grace)


def wait_until_serving(
    url: str, process: "subprocess.Popen[bytes] | None" = None, deadline: float = 15.0
) -> None:
    """Poll ``url`` until anything answers over HTTP; fail early if ``process`` exits."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing served {url} within {deadline}s")


def wait_for_status(url: str, expected: int, deadline: float = 10.0) -> httpx.Response:
    """GET ``url`` until it answers ``expected`` or ``deadline`` seconds pass; the last answer."""
    end = time.monotonic() + deadline
    while True:
        response = httpx.get(url, timeout=2)
        if response.status_code == expected or time.monotonic() > end:
            return response
        time.sleep(0.05)


@dataclass
class RunningSidecar:
    process: "subprocess.Popen[bytes]"
    url: str
    log: Path

    def log_size(self) -> int:
        """Bytes logged so far: pass to ``output(since=...)`` for what a test added."""
        return self.log.stat().st_size

    def output(self, since: int = 0) -> str:
        """The process's stdout and stderr, from byte ``since`` on."""
        with self.log.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", errors="replace")


@contextmanager
def run_sidecar(
    env: dict[str, str], log_dir: Path, argv: tuple[str, ...] = ()
) -> Iterator[RunningSidecar]:
    """Start ``connect-probe`` with ``env`` (CONNECT_PROBE_*) on a free port of 127.0.0.1, wait
    until ``/healthz`` answers, and stop it by PID on the way out (also on failure)."""
    port = free_port()
    full_env = {
        key: value for key, value in os.environ.items() if not key.startswith("CONNECT_PROBE_")
    }
    full_env.update({"CONNECT_PROBE_HOST": "127.0.0.1", "CONNECT_PROBE_PORT": str(port), **env})
    log = log_dir / f"connect-probe-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(SIDECAR), *argv], env=full_env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{url}/healthz", process)
        yield RunningSidecar(process, url, log)
    finally:
        stop_process(process)
