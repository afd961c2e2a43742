"""The benchmark machinery works end to end: a seconds-long smoke of bench/run.py.

Real processes (fake Connect, the sidecar, the bare FastAPI app) on 127.0.0.1, the built-in load
client instead of wrk. Nothing here asserts a timing: the figures of a smoke mean nothing, only
that every measurement produced one.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # the bench driver and its processes

ROOT = Path(__file__).resolve().parent.parent


def test_bench_smoke_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "smoke.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--smoke",
            "--out",
            str(out),
            "--logs",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    report = out.read_text()
    assert "## Targets" in report
    for target in ("T1", "T2", "T3", "T4", "T5"):
        assert f"| {target} |" in report

    data = json.loads(out.with_suffix(".json").read_text())
    runs = [run for pair in data["loads"] for run in pair["bare"] + pair["sidecar"]]
    assert runs
    assert all(run["requests"] > 0 and run["non_2xx"] == 0 for run in runs)
    assert all(math.isfinite(run["p99_ms"]) for run in runs)
    assert {pair["connectors"] for pair in data["loads"]} == {2, 5, 50}
    assert sum(window["connect_requests"] for window in data["idle"]) > 0
    assert all(window["sidecar_cpu_s"] > 0 for window in data["idle"])
    assert data["latencies"]["probes"] > 0
    assert data["latencies"]["non_200"] == 0
    assert data["rss_kb"]["bare idle"]["VmRSS"] > 0
    assert all(start["first_ok_s"] > 0 for start in data["startup"].values())
    assert math.isfinite(data["poll_cpu"]["changed_gross_ms_per_poll"])
    if data["exec_probe"] is not None:  # None only when curl is not installed
        assert data["exec_probe"]["failures"] == 0
