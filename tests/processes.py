"""Run ``connect-probe`` as a real process on 127.0.0.1 and stop it by PID, whatever happens."""

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

BIN = Path(sys.executable).parent / "connect-probe"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningSidecar:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def wait_until_serving(url: str, process: subprocess.Popen[bytes], deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"connect-probe exited with {process.returncode}")
        try:
            httpx.get(f"{url}/healthz", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(f"connect-probe did not serve {url} within {deadline}s")


@contextmanager
def run_sidecar(env: dict[str, str], log_dir: Path) -> Iterator[RunningSidecar]:
    """Start ``connect-probe`` with ``env`` (CONNECT_PROBE_*), wait until it serves, stop by PID."""
    port = free_port()
    full_env = {
        key: value for key, value in os.environ.items() if not key.startswith("CONNECT_PROBE_")
    }
    full_env.update({"CONNECT_PROBE_HOST": "127.0.0.1", "CONNECT_PROBE_PORT": str(port), **env})
    log = log_dir / f"connect-probe-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([str(BIN)], env=full_env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process)
        yield RunningSidecar(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
