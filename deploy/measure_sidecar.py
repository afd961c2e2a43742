"""Measure the sidecar's memory and CPU, to size its Kubernetes requests and limits.

Starts the fake Connect (``tools/fakeconnect/fast.py``) and the sidecar
(``.venv/bin/connect-probe`` by default), both bound to 127.0.0.1, then reads the sidecar's /proc
counters over three phases:

1. idle: kubelet traffic only (/ready every 5 s, /live and /healthz every 10 s), default poll;
2. steady load: ``--rate`` fresh-connection kube-probe GETs per second on /ready;
3. flood: ``--threads`` clients probing back to back (the CPU ceiling, and peak RSS).

Both processes are stopped by PID at the end. Usage::

    .venv/bin/python deploy/measure_sidecar.py --connectors 1 --tasks 1
    .venv/bin/python deploy/measure_sidecar.py --connectors 1000 --tasks 4
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.deploycheck.kubeprobe import probe  # noqa: E402 - after the path set-up above
from tools.procs import cpu_seconds, free_port, proc_status, stop_process  # noqa: E402


def memory_kib(pid: int) -> dict[str, int]:
    return proc_status(pid, ("VmRSS", "VmHWM", "RssAnon"))


@contextmanager
def running(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
    )
    try:
        yield process
    finally:
        stop_process(process)


def wait_for(url: str, status: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe(url).status == status:
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer {status} within {seconds:g}s")


def phase(pid: int, seconds: float, work: threading.Thread | None = None) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    if work is not None:
        work.start()
        work.join()
    else:
        time.sleep(seconds)
    elapsed = time.monotonic() - t0
    used = cpu_seconds(pid) - cpu0
    return {"seconds": round(elapsed, 1), "cpu_millicores": round(1000 * used / elapsed, 1)}


def kubelet_traffic(base: str, seconds: float) -> threading.Thread:
    def run() -> None:
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            probe(f"{base}/ready")
            if tick % 2 == 0:
                probe(f"{base}/live")
                probe(f"{base}/healthz")
            tick += 1
            time.sleep(max(0.0, start + 5 * tick - time.monotonic()))

    return threading.Thread(target=run)


def steady(base: str, seconds: float, rate: float) -> tuple[threading.Thread, list[float]]:
    latencies: list[float] = []

    def run() -> None:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            t = time.monotonic()
            probe(f"{base}/ready")
            latencies.append(time.monotonic() - t)
            n += 1
            time.sleep(max(0.0, start + n / rate - time.monotonic()))

    return threading.Thread(target=run), latencies


def flood(base: str, seconds: float, threads: int) -> tuple[threading.Thread, list[int]]:
    counts = [0] * threads

    def client(i: int) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            probe(f"{base}/ready", timeout=5)
            counts[i] += 1

    def run() -> None:
        workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    return threading.Thread(target=run), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecar", default=str(ROOT / ".venv" / "bin" / "connect-probe"))
    parser.add_argument("--connectors", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--churn", action="store_true", help="Connect's answer changes each poll")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of kubelet traffic")
    parser.add_argument("--load", type=float, default=30.0, help="seconds of steady load")
    parser.add_argument("--rate", type=float, default=20.0, help="probes per second (steady)")
    parser.add_argument("--flood", type=float, default=15.0, help="seconds of flood")
    parser.add_argument("--threads", type=int, default=8, help="flood clients")
    args = parser.parse_args()

    fake_port, probe_port = free_port(), free_port()
    env = {
        **os.environ,
        "CONNECT_PROBE_CONNECT_URL": f"http://127.0.0.1:{fake_port}",
        "CONNECT_PROBE_HOST": "127.0.0.1",
        "CONNECT_PROBE_PORT": str(probe_port),
        "CONNECT_PROBE_LOG_FORMAT": "json",
        "POD_IP": "127.0.0.1",
    }
    fake_cmd = [sys.executable, "-m", "tools.fakeconnect.fast"]
    fake_cmd += ["--port", str(fake_port), "--connectors", str(args.connectors)]
    fake_cmd += ["--tasks", str(args.tasks)] + (["--churn"] if args.churn else [])
    base = f"http://127.0.0.1:{probe_port}"
    with running(fake_cmd, env), running([args.sidecar], env) as sidecar:
        wait_for(f"{base}/healthz", 200, 30)
        wait_for(f"{base}/ready", 200, 30)
        pid = sidecar.pid
        result: dict[str, object] = {
            "connectors": args.connectors,
            "tasks_per_connector": args.tasks,
            "churn": args.churn,
            "startup_kib": memory_kib(pid),
        }
        result["idle"] = phase(pid, args.idle, kubelet_traffic(base, args.idle))
        result["idle_kib"] = memory_kib(pid)
        work, latencies = steady(base, args.load, args.rate)
        steady_result = phase(pid, args.load, work)
        latencies.sort()
        steady_result |= {
            "rate": args.rate,
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        }
        result["steady"] = steady_result
        work, counts = flood(base, args.flood, args.threads)
        flood_result = phase(pid, args.flood, work)
        flood_result["requests_per_s"] = round(sum(counts) / args.flood)
        result["flood"] = flood_result
        result["final_kib"] = memory_kib(pid)
    print(json.dumps(result, indent=2))  # noqa: T201 - the report


if __name__ == "__main__":
    main()
