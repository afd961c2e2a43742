"""Observe what a real Connect worker (and the sidecar) answers while its Kafka broker is lost.

Starts a broker, one worker of the given release with three connectors (a FileStream source, a
FileStream sink, an idle test source) and the sidecar; then freezes the broker (``--mode stop``:
SIGSTOP, a hung broker) or kills it (``--mode kill``: SIGKILL, a crashed one) for ``--down``
seconds, and brings it back (SIGCONT, or a restart on the same ports and data) for ``--up``
seconds. Every ``--every`` seconds it prints one line: the worker's ``/health`` (code, status,
latency), ``/connectors?expand=status`` (code, states, latency) and the sidecar's ``/ready`` and
``/live`` (code and reason codes).

    python -m tools.realconnect.lostkafka --version 4.3.1 --mode stop --down 180 --up 60

The README's "Losing Kafka" section quotes its output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

from tools.realconnect.artifacts import DEFAULT_CONNECT, ensure_artifacts
from tools.realconnect.cluster import ConnectCluster, RunDir, Worker, start_broker
from tools.realconnect.configs import failing_source, file_sink, file_source
from tools.realconnect.probe import Probe, probe_executable
from tools.realconnect.procs import stop_all


def say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - a measuring tool prints what it sees


def timed(client: httpx.Client, path: str) -> tuple[str, float, object]:
    """(code or error name, seconds, JSON body or None) of one GET."""
    started = time.monotonic()
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        return type(exc).__name__, time.monotonic() - started, None
    elapsed = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = None
    return str(response.status_code), elapsed, body


def states(body: object) -> str:
    if not isinstance(body, dict):
        return "-"
    found: dict[str, int] = {}
    for entry in body.values():
        status = entry.get("status", {}) if isinstance(entry, dict) else {}
        for obj in [status.get("connector", {}), *status.get("tasks", [])]:
            found[obj.get("state", "?")] = found.get(obj.get("state", "?"), 0) + 1
    return ",".join(f"{k}:{v}" for k, v in sorted(found.items()))


def sample(http: httpx.Client, worker: Worker, probe: Probe, t0: float, phase: str) -> str:
    h_code, h_s, h_body = timed(http, f"{worker.url}/health")
    h_status = h_body.get("status", "") if isinstance(h_body, dict) else ""
    h_msg = str(h_body.get("message", "")) if isinstance(h_body, dict) else ""
    h_msg = h_msg.split("The worker is currently ", 1)[-1][:90]
    c_code, c_s, c_body = timed(http, f"{worker.url}/connectors?expand=status")
    ready, live = probe.ready(), probe.live()
    return (
        f"{time.monotonic() - t0:6.1f}s {phase:5} health={h_code} {h_status} ({h_s:.2f}s) "
        f"connectors={c_code} {states(c_body)} ({c_s:.2f}s) "
        f"ready={ready.code} {ready.codes} live={live.code} {live.codes} | {h_msg}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", default=DEFAULT_CONNECT)
    parser.add_argument("--mode", choices=("stop", "kill"), default="stop")
    parser.add_argument("--down", type=float, default=180.0)
    parser.add_argument("--up", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=5.0)
    args = parser.parse_args(argv)
    artifacts = ensure_artifacts([args.version])
    run = RunDir(f"lostkafka-{args.version}-{args.mode}")
    try:
        broker = start_broker(artifacts, run)
        cluster = ConnectCluster(artifacts, broker, run, "lost", version=args.version)
        [worker] = cluster.start_workers(1)
        data = Path(run.path)
        (data / "in.txt").write_text("one\n")
        worker.client.create("source", file_source(data / "in.txt", "lines"))
        worker.client.create("sink", file_sink(data / "out.txt", "lines"))
        worker.client.create("idle", failing_source(tasks=1))
        for name in ("source", "sink", "idle"):
            worker.client.wait_for_state(name, "RUNNING", "RUNNING", task_count=1)
        probe = Probe(
            "sidecar",
            worker.url,
            data / "sidecar.log",
            executable=probe_executable(),
            settings={
                "WORKER_ID": worker.worker_id,
                "STARTUP_GRACE": "0",
                "LIVE_GRACE": "60",
                "TIMEOUT": "11",
                "MAX_AGE": "40",
            },
        ).start()
        probe.wait_ready(True, timeout=30)
        say(f"Connect {args.version}, broker {artifacts.broker_version}, logs {run}")
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            t0 = time.monotonic()
            say(sample(http, worker, probe, t0, "up"))
            if args.mode == "stop":
                broker.freeze()
            else:
                broker.kill()
            signal_name = "SIGSTOP" if args.mode == "stop" else "SIGKILL"
            say(f"{time.monotonic() - t0:6.1f}s broker {signal_name}")
            while time.monotonic() - t0 < args.down:
                say(sample(http, worker, probe, t0, "down"))
                time.sleep(args.every)
            if args.mode == "stop":
                broker.thaw()
            else:
                broker.start()
            back = time.monotonic()
            say(f"{back - t0:6.1f}s broker back")
            while time.monotonic() - back < args.up:
                say(sample(http, worker, probe, t0, "back"))
                time.sleep(args.every)
        probe.stop()
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
