"""Time the classic exec probe: ``sh -c 'curl -s URL | grep -q RUNNING'``, run N times in a row.

Run in its own process so that the children's rusage holds the probes and nothing else:

    python bench/exec_probe.py --url http://127.0.0.1:8083/connectors/NAME/status --runs 200

Prints one JSON object: runs, failures, CPU ms per probe (user+system of sh, curl and grep),
wall ms per probe (mean, median), the largest child's peak RSS in KiB, and the command.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time


def measure(url: str, runs: int, pattern: str = "RUNNING") -> dict[str, object]:
    argv = ["sh", "-c", f"curl -s {shlex.quote(url)} | grep -q {shlex.quote(pattern)}"]
    subprocess.run(argv, check=False, timeout=30)  # warm-up: page cache, DNS-free anyway
    warm = resource.getrusage(resource.RUSAGE_CHILDREN)
    walls: list[float] = []
    failures = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        rc = subprocess.run(argv, check=False, timeout=30).returncode
        walls.append(time.perf_counter() - t0)
        failures += rc != 0
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (done.ru_utime - warm.ru_utime) + (done.ru_stime - warm.ru_stime)
    return {
        "runs": runs,
        "failures": failures,
        "cpu_ms_per_probe": cpu / runs * 1e3,
        "wall_ms_per_probe": sum(walls) / runs * 1e3,
        "wall_ms_p50": statistics.median(walls) * 1e3,
        "max_rss_kb": done.ru_maxrss,
        "command": shlex.join(argv),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="time the classic curl|grep exec probe")
    p.add_argument("--url", required=True)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 100_000:
        p.error("--runs must be between 1 and 100000")
    sys.stdout.write(json.dumps(measure(args.url, args.runs)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
