"""``make demo``: a real Apache Kafka broker, a Kafka Connect worker and the sidecar (loopback).

The official Apache Kafka artifacts from Maven Central (``tools/realconnect/maven``): a single-node
KRaft broker and a worker of the newest 4.x Connect. Starts everything, creates a sample
FileStreamSource connector, prints the curl commands that pause, resume, break and fix it, then
prints every change of ``/ready`` and ``/live`` until Ctrl-C (exit status 0) or SIGTERM, when it
stops exactly the processes it started.

    python -m tools.realconnect.demo [--probe-port 18083] [--connect-port N] [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tools.realconnect.artifacts import DEFAULT_CONNECT, SetupError, ensure_artifacts
from tools.realconnect.cluster import ConnectCluster, RunDir, Worker, start_broker
from tools.realconnect.configs import FILE_SINK, file_source
from tools.realconnect.probe import Probe, probe_executable
from tools.realconnect.procs import (
    Terminated,
    raise_on_termination,
    restore_handlers,
    running,
    stop_all,
)

SOURCE = "demo-source"
TOPIC = "demo-lines"
BROKEN = "demo-broken-sink"
LIVE_GRACE = 15


def say(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to its user


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def instructions(connect: str, probe: str, run: Path, worker_pid: int, broker_pid: int) -> str:
    sink = {
        "name": BROKEN,
        "config": {
            "connector.class": FILE_SINK,
            "topics": TOPIC,
            "file": str(run / "missing" / "out.txt"),
        },
    }
    body = shlex.quote(httpx.Request("POST", "/", json=sink).content.decode())
    missing = shlex.quote(str(run / "missing"))
    return f"""
Watch the probes (this window prints every change of /ready and /live):
  curl -s {probe}/ready | python3 -m json.tool
  curl -s {probe}/live
  curl -s {probe}/status | python3 -m json.tool

Pause, then resume the sample connector ({SOURCE}): /ready 503 (live stays 200), then 200:
  curl -X PUT {connect}/connectors/{SOURCE}/pause
  curl -X PUT {connect}/connectors/{SOURCE}/resume

Break something: a sink whose task FAILS (its file is in a missing directory): /ready 503 naming it:
  curl -X POST -H 'Content-Type: application/json' {connect}/connectors -d {body}
Fix it and restart only what failed: /ready 200 again:
  mkdir -p {missing}
  curl -X POST '{connect}/connectors/{BROKEN}/restart?includeTasks=true&onlyFailed=true'
Stop (STOPPED is not ready by default), then delete it (ready again):
  curl -X PUT {connect}/connectors/{BROKEN}/stop
  curl -X DELETE {connect}/connectors/{BROKEN}

Kill the worker: /ready 503 at once, /live 503 after LIVE_GRACE ({LIVE_GRACE} s):
  kill -9 {worker_pid}

Stop Kafka itself (the worker keeps answering RUNNING; its /health, then /ready, say it is stuck
waiting on Kafka; /live stays 200), then let it go on:
  kill -STOP {broker_pid}
  kill -CONT {broker_pid}

Ctrl-C stops everything (sidecar, worker, broker).
"""


def take_terminal() -> Callable[[], None]:
    """Makes this process the terminal's foreground process group, so that Ctrl-C reaches only
    the demo (which stops its processes and exits 0), not ``make``, which would die of the SIGINT
    and exit 130 whatever the demo does. Returns how to give the terminal back."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return lambda: None
    try:
        previous = os.tcgetpgrp(tty)
        if previous != os.getpgrp():  # not in the foreground (e.g. run with &): leave it be
            raise OSError("not the foreground process group")
        os.setpgid(0, 0)
        _set_foreground(tty, os.getpgrp())
    except OSError:
        os.close(tty)
        return lambda: None

    def give_back() -> None:
        with contextlib.suppress(OSError):
            _set_foreground(tty, previous)
        os.close(tty)

    return give_back


def _set_foreground(tty: int, pgrp: int) -> None:
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from the background
    try:
        os.tcsetpgrp(tty, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, old)


def watch(probe: Probe, worker: Worker, duration: float | None) -> None:
    """Prints the answers of /ready and /live each time one changes (and when the worker exits)."""
    last: tuple[int, str, int, str] | None = None
    worker_was_alive = True
    deadline = None if duration is None else time.monotonic() + duration
    while deadline is None or time.monotonic() < deadline:
        stamp = time.strftime("%H:%M:%S")
        if probe.proc is not None and not probe.proc.alive:
            raise RuntimeError(
                f"the sidecar exited ({probe.proc.returncode}); log {probe.log_path}"
            )
        if worker_was_alive and not worker.alive:
            say(f"{stamp}  the worker process exited")
            worker_was_alive = False
        try:
            ready, live = probe.ready(), probe.live()
        except httpx.HTTPError as exc:
            say(f"{stamp}  the sidecar is not answering: {exc}")
            time.sleep(1)
            continue
        now = (ready.code, str(ready.body.get("summary")), live.code, str(live.body.get("summary")))
        if now != last:
            say(f"{stamp}  /ready {ready.code}  {now[1]}")
            for reason in ready.reasons[:5]:
                say(f"                   - {reason.get('message')}")
            say(f"{stamp}  /live  {live.code}  {now[3]}")
            last = now
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--probe-port", type=int, default=18083, help="sidecar port (18083)")
    parser.add_argument("--connect-port", type=int, default=0, help="worker REST port (free)")
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    args = parser.parse_args(argv)

    previous = raise_on_termination()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    give_back_terminal = take_terminal()
    run: RunDir | None = None
    try:
        if not port_free(args.probe_port):
            say(f"port {args.probe_port} on 127.0.0.1 is in use: pass --probe-port (PROBE_PORT=)")
            return 1
        try:
            artifacts = ensure_artifacts([DEFAULT_CONNECT], say)
            probe_bin = probe_executable()
        except (SetupError, FileNotFoundError) as exc:
            say(f"demo cannot start: {exc}")
            return 1
        run = RunDir("demo")
        say(f"logs: {run}")
        started = time.monotonic()
        say(f"broker      starting Apache Kafka {artifacts.broker_version} (KRaft) ...")
        broker = start_broker(artifacts, run)
        assert broker.proc is not None
        say(
            f"broker      127.0.0.1:{broker.port} up after {broker.start_seconds:.1f}s "
            f"(pid {broker.proc.pid})"
        )
        cluster = ConnectCluster(artifacts, broker, run, "demo")
        worker = cluster.new_worker(port=args.connect_port or None)
        worker.launch()
        say(f"worker      starting Kafka Connect {worker.version} on {worker.url} ...")
        seconds = worker.wait_healthy()
        assert worker.proc is not None
        version = worker.client.server_info()["version"]
        say(
            f"worker      {worker.url} healthy after {seconds:.1f}s: GET / says version "
            f"{version} (worker_id {worker.worker_id}, pid {worker.proc.pid})"
        )
        input_file = run.path / "input.txt"
        input_file.write_text("hello from the demo\n")
        worker.client.create(SOURCE, file_source(input_file, TOPIC))
        worker.client.wait_for_state(SOURCE, "RUNNING", "RUNNING", task_count=1)
        say(f"connector   {SOURCE}: FileStreamSource {input_file} -> topic {TOPIC}, RUNNING")
        probe = Probe(
            "sidecar",
            worker.url,
            run.path / "sidecar.log",
            port=args.probe_port,
            executable=probe_bin,
            settings={
                "WORKER_ID": worker.worker_id,
                "POLL_INTERVAL": "1",
                "TIMEOUT": "11",
                "MAX_AGE": "30",
                "TRANSIENT_GRACE": "10",
                "STARTUP_GRACE": "0",
                "LIVE_GRACE": str(LIVE_GRACE),
            },
        ).start()
        assert probe.proc is not None
        say(f"sidecar     {probe.url} (connect-probe, pid {probe.proc.pid})")
        say(f"everything up in {time.monotonic() - started:.1f}s")
        say(instructions(worker.url, probe.url, run.path, worker.proc.pid, broker.proc.pid))
        watch(probe, worker, args.duration)
        return 0
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Terminated)
        say(f"\n{'signal ' + str(exc) if isinstance(exc, Terminated) else 'Ctrl-C'}: stopping")
        return 143 if isinstance(exc, Terminated) else 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        with contextlib.suppress(Exception):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs = running()
        if procs:
            say("stopping " + ", ".join(f"{p.name} (pid {p.pid})" for p in reversed(procs)))
        stop_all()
        left = [p for p in procs if p.alive]
        say("all stopped" if not left else f"still running: {left}")
        if run is not None:
            say(f"logs kept in {run}")
        give_back_terminal()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        restore_handlers(previous)


if __name__ == "__main__":
    sys.exit(main())
