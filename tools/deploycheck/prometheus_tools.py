"""Debian's promtool and prometheus for tests: where they are, and a Prometheus server on
127.0.0.1 with a temporary config and data directory, stopped by PID whatever happens.

``make prometheus-tools`` unpacks them into ``~/.cache/kafka-connect-probe/tools/prometheus``;
``PROMTOOL`` / ``PROMETHEUS`` point elsewhere.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.procs import free_port

TOOLS = Path(
    os.environ.get("DEPLOY_TOOLS", Path.home() / ".cache" / "kafka-connect-probe" / "tools")
)


def binary(name: str) -> str:
    """``promtool`` or ``prometheus``: $NAME, else DEPLOY_TOOLS, else PATH.

    Missing: a failure in CI, a skip elsewhere (``make prometheus-tools`` installs them).
    """
    candidates = [
        os.environ.get(name.upper(), ""),
        str(TOOLS / "prometheus" / "usr" / "bin" / name),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found: run `make prometheus-tools` (Debian package prometheus)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class RunningPrometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def own_metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
        return text


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"prometheus not ready within {seconds}s:\n{log.read_text()}")


@contextmanager
def run_prometheus(config: dict[str, Any], workdir: Path) -> Iterator[RunningPrometheus]:
    """Prometheus with ``config`` on 127.0.0.1:<free port>, data in ``workdir``.

    Nothing leaves the machine: the config names only local targets and files (no remote write,
    no Alertmanager), the listen and external URL are 127.0.0.1, and Prometheus has no update
    check or telemetry of its own.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    log = workdir / "prometheus.log"
    command = [
        binary("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}/",
        "--log.level=warn",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        _wait_ready(url, process, log, 30.0)
        yield RunningPrometheus(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
