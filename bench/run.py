"""Benchmark driver: the sidecar side by side with a bare FastAPI app and the classic exec probe.

Starts real processes on 127.0.0.1 (fake Connect, the sidecar, the bare app), drives them with
``wrk`` (or, for the smoke, a small pure-Python keep-alive client), reads CPU and RSS from /proc,
counts Connect requests with the fake's counter, and writes a Markdown report with targets T1-T5
of issue 7 computed as ratios measured in this one run.

    .venv/bin/python bench/run.py                 # full run, writes bench/results.md (minutes)
    .venv/bin/python bench/run.py --smoke         # seconds, tiny N, no wrk needed, no verdicts
    .venv/bin/python bench/run.py --progress-only # the progress checks' cost alone (issue 14)

The progress checks' phase (bench/progress_cost.py) measures them at 1,000 sink tasks x 4
partitions with a fake Kafka reader and, in a full run, against a real Apache Kafka broker
(tools/realconnect: Java 17 and Maven; ``--no-real-kafka`` leaves that part out).

Every process is stopped by PID in ``finally`` blocks; every load loop is bounded in time/count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.procs import cpu_seconds, free_port, proc_status, stop_process  # noqa: E402 - the repository root comes first

BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
HOST = "127.0.0.1"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Config:
    smoke: bool
    out: Path
    logs: Path
    python: Path
    sidecar: Path
    load_tool: str  # "wrk" or "py"
    conns: tuple[int, ...]
    load_seconds: float
    reps: int
    exec_runs: int
    n_small: int
    n_mid: int
    n_big: int
    tasks: int
    idle_window: float
    kubelet_period: float
    poll_window_polls: int
    latency_window: float
    latency_every: float
    poll_interval: float | None  # None = the sidecar's default
    sidecar_env: tuple[tuple[str, str], ...]
    start_timeout: float
    real_kafka: bool = True  # the progress phase's real-broker part (full runs only)


def make_config(args: argparse.Namespace) -> Config:
    smoke: bool = args.smoke
    load_tool = args.load_tool
    if load_tool == "auto":
        load_tool = "py" if smoke or shutil.which("wrk") is None else "wrk"
    if not smoke and load_tool != "wrk" and not (args.allow_py_load or args.progress_only):
        raise SystemExit("wrk not found: run `make bench` (installs it) or apt-get install wrk")
    extra = tuple(tuple(kv.split("=", 1)) for kv in args.sidecar_env)
    env_pairs: tuple[tuple[str, str], ...] = tuple((k, v) for k, v in extra)
    out = (
        Path(args.out) if args.out else BENCH / ("out/smoke-results.md" if smoke else "results.md")
    )
    logs = Path(args.logs) if args.logs else BENCH / "out" / ("smoke-logs" if smoke else "logs")
    if smoke:
        return Config(
            smoke=True,
            out=out,
            logs=logs,
            python=Path(args.python),
            sidecar=Path(args.sidecar),
            load_tool=load_tool,
            conns=(1, 10),
            load_seconds=0.3,
            reps=1,
            exec_runs=3,
            n_small=2,
            n_mid=5,
            n_big=50,
            tasks=2,
            idle_window=0.6,
            kubelet_period=0.3,
            poll_window_polls=2,
            latency_window=0.5,
            latency_every=0.05,
            poll_interval=args.poll_interval or 0.2,
            sidecar_env=env_pairs,
            start_timeout=20.0,
        )
    return Config(
        smoke=False,
        out=out,
        logs=logs,
        python=Path(args.python),
        sidecar=Path(args.sidecar),
        load_tool=load_tool,
        conns=(1, 10, 100),
        load_seconds=args.seconds,
        reps=args.reps,
        exec_runs=args.exec_runs,
        n_small=10,
        n_mid=100,
        n_big=args.big,
        tasks=4,
        idle_window=args.idle_window,
        kubelet_period=10.0,
        poll_window_polls=args.poll_window_polls,
        latency_window=args.latency_window,
        latency_every=0.02,
        poll_interval=args.poll_interval,
        sidecar_env=env_pairs,
        start_timeout=120.0,
    )


# --------------------------------------------------------------------------------------------
# processes


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    popen: subprocess.Popen[bytes]
    started: float
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def command(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(self.argv)


class Procs:
    """Owns every process the bench starts; stops them by PID."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[Proc] = []
        self.commands: dict[str, str] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str], port: int, log_name: str
    ) -> Proc:
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{log_name}.log"
        full_env = dict(os.environ)
        full_env.update(env)
        with open(log_path, "wb") as logf:
            started = time.perf_counter()
            popen = subprocess.Popen(
                argv,
                env=full_env,
                stdout=subprocess.PIPE if port == 0 else logf,
                stderr=logf,
                cwd=ROOT,
                start_new_session=True,
            )
        proc = Proc(name, argv, env, port, popen, started, log_path)
        self.procs.append(proc)
        self.commands.setdefault(name, proc.command())
        return proc

    def stop(self, proc: Proc) -> None:
        stop_process(proc.popen)
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc)


def start_fake(
    procs: Procs,
    cfg: Config,
    n: int,
    t: int,
    *,
    vary: bool = False,
    label: str = "",
    trace_bytes: int = 0,
    workers: str = "10.0.0.1:8083,10.0.0.2:8083,10.0.0.3:8083",
    sinks: bool = False,
) -> Proc:
    """The fast fake Connect; ``sinks``: every connector a sink (else half are sources)."""
    argv = [
        str(cfg.python),
        "-m",
        "tools.fakeconnect.fast",
        "--host",
        HOST,
        "--port",
        "0",
        "--connectors",
        str(n),
        "--tasks",
        str(t),
        "--worker-ids",
        workers,
    ]
    if sinks:
        argv.append("--sinks")
    if vary:
        argv.append("--vary")
    if trace_bytes:
        argv += ["--trace-bytes", str(trace_bytes)]
    proc = procs.start(f"fake Connect N={n}x{t}", argv, {}, 0, f"fake-{label or n}")
    assert proc.popen.stdout is not None
    deadline = time.monotonic() + cfg.start_timeout
    line = b""
    while time.monotonic() < deadline:
        line = proc.popen.stdout.readline()
        if line.startswith(b"PORT ") or not line:
            break
    if not line.startswith(b"PORT "):
        procs.stop(proc)
        raise RuntimeError(f"fake Connect did not start, see {proc.log_path}")
    proc.port = int(line.split()[1])
    return proc


def start_bare(procs: Procs, cfg: Config) -> Proc:
    port = free_port()
    argv = [str(cfg.python), str(BENCH / "bare_app.py"), "--host", HOST, "--port", str(port)]
    return procs.start("bare FastAPI app", argv, {}, port, "bare")


def sidecar_env(
    cfg: Config, fake: Proc, port: int, poll_interval: float | None, scope: str = "cluster"
) -> dict[str, str]:
    env = {
        "CONNECT_PROBE_CONNECT_URL": f"http://{HOST}:{fake.port}",
        "CONNECT_PROBE_HOST": HOST,
        "CONNECT_PROBE_PORT": str(port),
        "CONNECT_PROBE_SCOPE": scope,
        "CONNECT_PROBE_WORKER_ID": "10.0.0.1:8083",
    }
    if poll_interval is not None:
        env["CONNECT_PROBE_POLL_INTERVAL"] = f"{poll_interval:g}"
    env.update(dict(cfg.sidecar_env))
    return env


def start_sidecar(
    procs: Procs, cfg: Config, fake: Proc, label: str, scope: str = "cluster"
) -> Proc:
    port = free_port()
    env = sidecar_env(cfg, fake, port, cfg.poll_interval, scope)
    return procs.start("sidecar", [str(cfg.sidecar)], env, port, f"sidecar-{label}")


# --------------------------------------------------------------------------------------------
# tiny HTTP client (fresh connection per request, like the kubelet)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: kube-probe/1.31\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode()
        )
        chunks: list[bytes] = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"bad HTTP answer: {raw[:80]!r}")
    return int(parts[1]), body


def timed_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, float]:
    t0 = time.perf_counter()
    status, _ = http_get(port, path, timeout)
    return status, time.perf_counter() - t0


def fake_stats(fake: Proc, reset: bool = False) -> dict[str, Any]:
    _, body = http_get(fake.port, "/_stats?reset=1" if reset else "/_stats")
    stats: dict[str, Any] = json.loads(body)
    return stats


def fake_control(fake: Proc, **params: str) -> None:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    http_get(fake.port, f"/_control?{query}")


@dataclass
class Startup:
    first_answer_s: float | None = None
    first_status: int | None = None
    first_ok_s: float | None = None


def wait_started(proc: Proc, path: str, timeout: float, want_ok: bool = True) -> Startup:
    """Seconds from Popen to the first HTTP answer on `path`, and to the first 200."""
    res = Startup()
    deadline = proc.started + timeout
    while time.perf_counter() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}), see {proc.log_path}")
        try:
            status, _ = http_get(proc.port, path, timeout=1.0)
        except OSError:
            time.sleep(0.002)
            continue
        now = time.perf_counter() - proc.started
        if res.first_answer_s is None:
            res.first_answer_s, res.first_status = now, status
        if status == 200:
            res.first_ok_s = now
            return res
        if not want_ok:
            return res
        time.sleep(0.005)
    raise RuntimeError(f"{proc.name}: no 200 on {path} within {timeout:g} s, see {proc.log_path}")


# --------------------------------------------------------------------------------------------
# /proc readings


def cpu_times(pid: int) -> tuple[float, float]:
    """(precise on-CPU seconds from per-thread schedstat, utime+stime seconds from stat)."""
    ns = 0
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(FileNotFoundError, ProcessLookupError),
                open(f"/proc/{pid}/task/{tid}/schedstat") as f,
            ):
                ns += int(f.read().split()[0])
    return ns / 1e9, cpu_seconds(pid)


@dataclass
class CpuWindow:
    seconds: float
    cpu_s: float  # schedstat
    cpu_stat_s: float  # utime+stime (10 ms resolution)


@contextlib.contextmanager
def measure_cpu(pid: int) -> Iterator[list[CpuWindow]]:
    box: list[CpuWindow] = []
    t0 = time.perf_counter()
    a, b = cpu_times(pid)
    yield box
    a2, b2 = cpu_times(pid)
    box.append(CpuWindow(time.perf_counter() - t0, a2 - a, b2 - b))


def rss_kb(pid: int) -> dict[str, int]:
    return proc_status(pid, ("VmRSS", "VmHWM", "RssAnon", "RssFile"))


# --------------------------------------------------------------------------------------------
# load generators


@dataclass
class Load:
    tool: str
    conns: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    command: str
    # Share of the run during which some runnable task waited for a CPU (/proc/pressure/cpu
    # "some"): wrk and the server alone keep both CPUs busy without waiting, so a high figure
    # means other processes competed for the CPUs during this run.
    cpu_pressure_pct: float = float("nan")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(url: str, conns: int, seconds: float) -> Load:
    argv = [
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    text = res.stdout
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", text, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    reqs = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", text)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return Load(
        tool="wrk",
        conns=conns,
        seconds=seconds,
        requests=reqs,
        rps=rps,
        p50_ms=_ms(pct["50"]),
        p99_ms=_ms(pct["99"]),
        max_ms=_ms(mx.group(1)) if mx else float("nan"),
        errors=sum(int(g) for g in errs.groups()) if errs else 0,
        non_2xx=int(non2.group(1)) if non2 else 0,
        command=shlex.join(argv),
    )


async def _py_load(port: int, path: str, conns: int, seconds: float) -> tuple[list[float], int]:
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: */*\r\n\r\n".encode()
    latencies: list[float] = []
    non_2xx = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal non_2xx
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 2"):
                    non_2xx += 1
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(conns))), timeout=seconds + 30)
    return latencies, non_2xx


def run_py_load(port: int, path: str, conns: int, seconds: float) -> Load:
    t0 = time.perf_counter()
    lat, non2 = asyncio.run(_py_load(port, path, conns, seconds))
    elapsed = time.perf_counter() - t0
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else float("nan")

    return Load(
        tool="py",
        conns=conns,
        seconds=elapsed,
        requests=len(lat),
        rps=len(lat) / elapsed if elapsed else 0.0,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        max_ms=lat[-1] * 1e3 if lat else float("nan"),
        errors=0,
        non_2xx=non2,
        command=f"bench/run.py built-in keep-alive client, {conns} connections, {seconds:g} s",
    )


def _pressure_us() -> int | None:
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    match = re.search(r"total=(\d+)", first)
    return int(match.group(1)) if match else None


def load(cfg: Config, port: int, path: str, conns: int) -> Load:
    before, t0 = _pressure_us(), time.perf_counter()
    if cfg.load_tool == "wrk":
        result = run_wrk(f"http://{HOST}:{port}{path}", conns, cfg.load_seconds)
    else:
        result = run_py_load(port, path, conns, cfg.load_seconds)
    after, elapsed = _pressure_us(), time.perf_counter() - t0
    if before is not None and after is not None and elapsed > 0:
        result.cpu_pressure_pct = (after - before) / 1e6 / elapsed * 100
    return result


# --------------------------------------------------------------------------------------------
# exec probe


@dataclass
class ExecProbe:
    runs: int
    cpu_ms_per_probe: float
    wall_ms_per_probe: float
    wall_ms_p50: float
    max_rss_kb: int
    failures: int
    command: str


def exec_probe(cfg: Config, fake: Proc, runs: int) -> ExecProbe:
    """Run bench/exec_probe.py in its own process: its children's rusage is the probes' alone."""
    url = f"http://{HOST}:{fake.port}/connectors/conn-00000/status"
    argv = [str(cfg.python), str(BENCH / "exec_probe.py"), "--url", url, "--runs", str(runs)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30 + runs)
    data = json.loads(out.stdout)
    return ExecProbe(
        runs=int(data["runs"]),
        cpu_ms_per_probe=float(data["cpu_ms_per_probe"]),
        wall_ms_per_probe=float(data["wall_ms_per_probe"]),
        wall_ms_p50=float(data["wall_ms_p50"]),
        max_rss_kb=int(data["max_rss_kb"]),
        failures=int(data["failures"]),
        command=str(data["command"]),
    )


# --------------------------------------------------------------------------------------------
# phases


@dataclass
class LoadPair:
    conns: int
    connectors: int
    bare: list[Load] = field(default_factory=list)
    sidecar: list[Load] = field(default_factory=list)
    connect_requests: list[int] = field(default_factory=list)

    def med(self, who: str, attr: str) -> float:
        runs = self.bare if who == "bare" else self.sidecar
        return float(statistics.median(float(getattr(r, attr)) for r in runs))

    def paired(self, attr: str) -> float:
        """Median over the repetitions of sidecar/bare, each pair measured back to back."""
        ratios = [
            float(getattr(s, attr)) / float(getattr(b, attr))
            for b, s in zip(self.bare, self.sidecar, strict=True)
            if float(getattr(b, attr)) > 0
        ]
        return float(statistics.median(ratios)) if ratios else float("nan")

    def pressure(self) -> float:
        values = [r.cpu_pressure_pct for r in self.bare + self.sidecar]
        return max(values) if values else float("nan")

    def spread(self, who: str, attr: str, digits: int) -> str:
        """Median, with min-max when there were several runs."""
        values = [float(getattr(r, attr)) for r in (self.bare if who == "bare" else self.sidecar)]
        text = f"{statistics.median(values):,.{digits}f}"
        if len(values) > 1:
            text += f" ({min(values):,.{digits}f} to {max(values):,.{digits}f})"
        return text


@dataclass
class IdleWindow:
    label: str
    connectors: int
    seconds: float
    periods: int
    sidecar_cpu_s: float
    sidecar_cpu_stat_s: float
    bare_cpu_s: float | None
    connect_requests: int
    polls: int
    probes: int
    poll_interval: float
    connect_connections: int = 0  # TCP connections the fake accepted in the window


@dataclass
class Latencies:
    probes: int
    worst_ms: float
    worst_during_poll_ms: float
    p50_ms: float
    p99_ms: float
    polls: int
    non_200: int


MIB = 1024 * 1024


@dataclass
class Envelope:
    """The mass-failure case (issue 11): every task FAILED with a long trace, answers at the
    response cap and different at every poll; the sidecar's peak against its deploy/ limit."""

    connectors: int
    tasks: int
    trace_bytes: int
    body_bytes: int
    peak_rss_kib: int
    rss_after_kib: int
    limit_mib: float
    latencies: Latencies
    log_lines: int


def deploy_memory_limit_mib() -> float:
    """The sidecar container's memory limit in deploy/base (the figure the envelope must fit)."""
    import yaml  # a dev dependency, like the bench itself

    path = ROOT / "deploy" / "base" / "statefulset.yaml"
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        spec = doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            if container["name"] == "connect-probe":
                limit = str(container["resources"]["limits"]["memory"])
                if not limit.endswith("Mi"):
                    raise RuntimeError(f"sidecar memory limit {limit!r} is not in Mi")
                return float(limit[:-2])
    raise RuntimeError(f"no connect-probe container with a memory limit in {path}")


def envelope_run(procs: Procs, cfg: Config) -> Envelope:
    """Every task FAILED with ~10 KB traces, the answer just under the 64 MiB cap."""
    n, t, trace = (20, 3, 1000) if cfg.smoke else (2000, 3, 10_700)
    fake = start_fake(procs, cfg, n, t, vary=True, label="envelope", trace_bytes=trace)
    try:
        _, body = http_get(fake.port, "/connectors?expand=status", timeout=60)
        side = start_sidecar(procs, cfg, fake, "envelope", scope="worker")
        try:
            wait_started(side, "/live", cfg.start_timeout)
            latencies = latency_loop(cfg, side, fake, 2.0 if cfg.smoke else cfg.latency_window)
            rss = rss_kb(side.pid)
        finally:
            procs.stop(side)
        log_lines = len(side.log_path.read_text(encoding="utf-8", errors="replace").splitlines())
    finally:
        procs.stop(fake)
    return Envelope(
        n,
        t,
        trace,
        len(body),
        rss["VmHWM"],
        rss["VmRSS"],
        deploy_memory_limit_mib(),
        latencies,
        log_lines,
    )


@dataclass
class Results:
    mode: str
    started: str
    poll_interval: float
    startup: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    rss_kb: dict[str, dict[str, int]] = field(default_factory=dict)
    exec_probe: ExecProbe | None = None
    loads: list[LoadPair] = field(default_factory=list)
    idle: list[IdleWindow] = field(default_factory=list)
    latencies: Latencies | None = None
    poll_cpu: dict[str, float] = field(default_factory=dict)
    envelope: Envelope | None = None
    progress: dict[str, Any] | None = None  # bench/progress_cost.py (issue 14)
    commands: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)


def progress_phase(procs: Procs, cfg: Config) -> dict[str, Any]:
    import progress_cost  # bench/, beside this file

    return asdict(progress_cost.run_phase(sys.modules[__name__], procs, cfg, cfg.real_kafka))


def default_poll_interval(cfg: Config) -> float:
    code = "from app.settings import Settings as S; print(S.model_fields['poll_interval'].default)"
    try:
        res = subprocess.run(
            [str(cfg.python), "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        return float(res.stdout.strip())
    except (ValueError, subprocess.SubprocessError):
        return 5.0


def load_pairs(
    cfg: Config,
    res: Results,
    bare: Proc,
    side: Proc,
    fake: Proc,
    connectors: int,
    conns: Sequence[int],
) -> None:
    for c in conns:
        pair = LoadPair(conns=c, connectors=connectors)
        for rep in range(cfg.reps):
            pair.bare.append(load(cfg, bare.port, "/ready", c))
            fake_stats(fake, reset=True)
            pair.sidecar.append(load(cfg, side.port, "/ready", c))
            pair.connect_requests.append(fake_stats(fake)["requests"])
            log(
                f"N={connectors} c={c} rep={rep}: bare {pair.bare[-1].rps:.0f} req/s "
                f"p99 {pair.bare[-1].p99_ms:.2f} ms | sidecar {pair.sidecar[-1].rps:.0f} req/s "
                f"p99 {pair.sidecar[-1].p99_ms:.2f} ms, {pair.connect_requests[-1]} Connect reqs"
            )
        res.loads.append(pair)


def idle_window(
    cfg: Config,
    label: str,
    side: Proc,
    fake: Proc,
    connectors: int,
    seconds: float,
    poll_interval: float,
    bare: Proc | None = None,
    probes: bool = True,
) -> IdleWindow:
    """CPU of the sidecar (and the bare app) over `seconds`, one /ready + one /live per period."""
    periods = max(1, round(seconds / cfg.kubelet_period))
    fake_stats(fake, reset=True)
    bare_box: list[CpuWindow] = []
    n_probes = 0
    with (
        measure_cpu(side.pid) as box,
        measure_cpu(bare.pid) if bare else contextlib.nullcontext(bare_box) as bbox,
    ):
        t0 = time.perf_counter()
        for i in range(periods):
            if probes:
                for path in ("/ready", "/live"):
                    http_get(side.port, path)
                    if bare is not None:
                        http_get(bare.port, path)
                    n_probes += 1
            next_at = t0 + (i + 1) * cfg.kubelet_period
            time.sleep(max(0.0, next_at - time.perf_counter()))
    stats = fake_stats(fake)
    win = box[0]
    return IdleWindow(
        label=label,
        connectors=connectors,
        seconds=win.seconds,
        periods=periods,
        sidecar_cpu_s=win.cpu_s,
        sidecar_cpu_stat_s=win.cpu_stat_s,
        bare_cpu_s=bbox[0].cpu_s if bare is not None and bbox else None,
        connect_requests=int(stats["requests"]),
        polls=int(stats["by_route"].get("connectors_expand", 0)),
        probes=n_probes,
        poll_interval=poll_interval,
        # minus the connection of the /_stats request that read these figures
        connect_connections=max(0, int(stats.get("connections", 0)) - 1),
    )


def latency_loop(cfg: Config, side: Proc, fake: Proc, seconds: float) -> Latencies:
    fake_stats(fake, reset=True)
    samples: list[tuple[float, float, int]] = []
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at:
        wall = time.time()
        status, lat = timed_get(side.port, "/ready", timeout=10)
        samples.append((wall, lat, status))
        time.sleep(cfg.latency_every)
    polls = [float(t) for t in fake_stats(fake)["expand_times"]]
    # "during a poll": the probe started between a poll's request and 2 s later.
    during = [lat for wall, lat, _ in samples if any(0 <= wall - p <= 2.0 for p in polls)]
    lats = sorted(lat for _, lat, _ in samples)
    return Latencies(
        probes=len(samples),
        worst_ms=lats[-1] * 1e3,
        worst_during_poll_ms=max(during) * 1e3 if during else float("nan"),
        p50_ms=lats[len(lats) // 2] * 1e3,
        p99_ms=lats[min(len(lats) - 1, int(0.99 * len(lats)))] * 1e3,
        polls=len(polls),
        non_200=sum(1 for _, _, s in samples if s != 200),
    )


def poll_cpu_window(side: Proc, fake: Proc, seconds: float) -> tuple[CpuWindow, int]:
    fake_stats(fake, reset=True)
    with measure_cpu(side.pid) as box:
        time.sleep(seconds)
    polls = int(fake_stats(fake)["by_route"].get("connectors_expand", 0))
    return box[0], polls


def run_bench(cfg: Config) -> Results:
    poll_interval = cfg.poll_interval or default_poll_interval(cfg)
    res = Results(
        mode="smoke" if cfg.smoke else "full",
        started=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        poll_interval=poll_interval,
    )
    res.machine = machine_info(cfg)
    procs = Procs(cfg.logs)
    try:
        # --- N = mid: startup, exec probe, idle CPU, throughput --------------------------------
        log(f"fake Connect N={cfg.n_mid}x{cfg.tasks}")
        fake = start_fake(procs, cfg, cfg.n_mid, cfg.tasks)
        bare = start_bare(procs, cfg)
        st = wait_started(bare, "/ready", cfg.start_timeout)
        res.startup["bare"] = asdict(st)
        side = start_sidecar(procs, cfg, fake, f"n{cfg.n_mid}")
        st = wait_started(side, "/ready", cfg.start_timeout)
        res.startup[f"sidecar N={cfg.n_mid}"] = asdict(st)
        log(f"started: {res.startup}")
        time.sleep(0.5 if cfg.smoke else 2.0)
        for _ in range(3):
            http_get(bare.port, "/ready")
            http_get(side.port, "/ready")
        res.rss_kb["bare idle"] = rss_kb(bare.pid)
        res.rss_kb[f"sidecar idle N={cfg.n_mid}"] = rss_kb(side.pid)

        if shutil.which("curl") is not None:
            log(f"exec probe x{cfg.exec_runs}")
            res.exec_probe = exec_probe(cfg, fake, cfg.exec_runs)
            log(f"exec probe: {res.exec_probe}")
        elif not cfg.smoke:
            raise RuntimeError("curl not found: run `make bench-tools` or apt-get install curl")
        else:
            log("curl not installed: smoke without the exec probe")

        log(f"idle window {cfg.idle_window:g} s (one /ready + one /live per period)")
        res.idle.append(
            idle_window(cfg, "kubelet", side, fake, cfg.n_mid, cfg.idle_window, poll_interval, bare)
        )
        log(f"idle: {res.idle[-1]}")

        load_pairs(cfg, res, bare, side, fake, cfg.n_mid, cfg.conns)
        top = max(cfg.conns)
        procs.stop(side)
        procs.stop(fake)

        # --- N = small: throughput at the top concurrency, idle baseline -----------------------
        log(f"fake Connect N={cfg.n_small}x{cfg.tasks}")
        fake = start_fake(procs, cfg, cfg.n_small, cfg.tasks)
        side = start_sidecar(procs, cfg, fake, f"n{cfg.n_small}")
        res.startup[f"sidecar N={cfg.n_small}"] = asdict(
            wait_started(side, "/ready", cfg.start_timeout)
        )
        load_pairs(cfg, res, bare, side, fake, cfg.n_small, (top,))
        base_s = poll_interval * cfg.poll_window_polls
        win, polls = poll_cpu_window(side, fake, base_s)
        res.poll_cpu["baseline_cpu_per_s"] = win.cpu_s / win.seconds
        res.poll_cpu["baseline_cpu_s"] = win.cpu_s
        res.poll_cpu["baseline_polls"] = polls
        res.poll_cpu["baseline_window_s"] = win.seconds
        procs.stop(side)
        procs.stop(fake)

        # --- N = big: RSS, CPU per poll, latency during polls, throughput ----------------------
        log(f"fake Connect N={cfg.n_big}x{cfg.tasks} (two renderings, first one only)")
        fake = start_fake(procs, cfg, cfg.n_big, cfg.tasks, vary=True, label=f"{cfg.n_big}")
        fake_control(fake, vary="0")  # steady state first: the same bytes every poll
        side = start_sidecar(procs, cfg, fake, f"n{cfg.n_big}")
        res.startup[f"sidecar N={cfg.n_big}"] = asdict(
            wait_started(side, "/ready", cfg.start_timeout)
        )
        time.sleep(min(2 * poll_interval, 12.0))
        res.rss_kb[f"sidecar N={cfg.n_big} steady, after start"] = rss_kb(side.pid)

        win, polls = poll_cpu_window(side, fake, poll_interval * cfg.poll_window_polls)
        res.poll_cpu["unchanged_cpu_s"] = win.cpu_s
        res.poll_cpu["unchanged_window_s"] = win.seconds
        res.poll_cpu["unchanged_polls"] = polls
        res.rss_kb[f"sidecar N={cfg.n_big} steady, after unchanged polls"] = rss_kb(side.pid)
        # From here on every poll gets different bytes (same states): parse + evaluate each time.
        fake_control(fake, vary="1")
        win, polls = poll_cpu_window(side, fake, poll_interval * cfg.poll_window_polls)
        res.poll_cpu["changed_cpu_s"] = win.cpu_s
        res.poll_cpu["changed_window_s"] = win.seconds
        res.poll_cpu["changed_polls"] = polls
        # Windows of the same length (same number of poll intervals) at N=small and N=big: the
        # gross figure is all the sidecar's CPU per poll interval (idle wake-ups included); the
        # net one subtracts the same at N=small, i.e. what the N=big poll costs on top.
        pc = res.poll_cpu
        base = pc["baseline_cpu_s"] / pc["baseline_polls"] if pc["baseline_polls"] else 0.0
        pc["baseline_ms_per_poll"] = base * 1e3
        for kind in ("unchanged", "changed"):
            n = pc[f"{kind}_polls"]
            gross = pc[f"{kind}_cpu_s"] / n if n else float("nan")
            pc[f"{kind}_gross_ms_per_poll"] = gross * 1e3
            pc[f"{kind}_ms_per_poll"] = (gross - base) * 1e3
        log(f"poll cpu: {res.poll_cpu}")
        res.rss_kb[f"sidecar N={cfg.n_big} after changed polls"] = rss_kb(side.pid)

        log(f"latency loop {cfg.latency_window:g} s")
        res.latencies = latency_loop(cfg, side, fake, cfg.latency_window)
        log(f"latency: {res.latencies}")

        load_pairs(cfg, res, bare, side, fake, cfg.n_big, (top,))
        res.rss_kb[f"sidecar N={cfg.n_big} after changed polls + load"] = rss_kb(side.pid)
        res.idle.append(
            idle_window(
                cfg,
                "big",
                side,
                fake,
                cfg.n_big,
                poll_interval * cfg.poll_window_polls,
                poll_interval,
                None,
                probes=False,
            )
        )
        res.rss_kb["bare at end"] = rss_kb(bare.pid)

        # --- the worst day: mass failure at the response cap (issue 11) -----------------------
        log("mass failure at the response cap")
        res.envelope = envelope_run(procs, cfg)
        log(f"envelope: {res.envelope}")

        # --- progress checks at 1,000 sink tasks x 4 partitions (issue 14) --------------------
        res.progress = progress_phase(procs, cfg)
    finally:
        res.commands = dict(procs.commands)
        procs.stop_all()
        res.machine["load average at end"] = _loadavg()
        res.machine["cpu pressure at end"] = _pressure()
    return res


# --------------------------------------------------------------------------------------------
# report


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "n/a"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _pressure() -> str:
    """/proc/pressure/cpu "some" line: share of time runnable tasks waited for a CPU."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "n/a"


def machine_info(cfg: Config) -> dict[str, str]:
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        mhz = re.findall(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu"] = f"{models[0] if models else '?'} ({len(models)} listed, {mhz[:1]} MHz)"
    info["load average at start"] = _loadavg()
    info["cpu pressure at start"] = _pressure()
    info["nproc"] = _first_line(["nproc"])
    info["free -m"] = _first_line(["sh", "-c", "free -m | sed -n 2p"])
    info["kernel"] = platform.release()
    info["os"] = _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])
    info["python"] = platform.python_version()
    for dist in ("uvicorn", "fastapi", "starlette", "httpx", "httpcore", "uvloop", "httptools"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = "not installed"
    info["kafka-connect-probe"] = _first_line([str(cfg.sidecar), "--version"])
    info["wrk"] = _first_line(["wrk", "-v"]) if shutil.which("wrk") else "not installed"
    info["curl"] = _first_line(["curl", "--version"])
    return info


@dataclass
class Target:
    name: str
    what: str
    measured: float
    op: str
    limit: float
    unit: str = ""

    @property
    def ok(self) -> bool:
        if self.measured != self.measured:  # NaN
            return False
        return self.measured >= self.limit if self.op == ">=" else self.measured <= self.limit


def targets(res: Results, cfg: Config) -> list[Target]:
    top = max(cfg.conns)
    by = {(p.connectors, p.conns): p for p in res.loads}
    mid = by[(cfg.n_mid, top)]
    out = [
        Target(
            "T1",
            f"/ready req/s vs bare at {top} conns, N={cfg.n_mid}",
            mid.paired("rps"),
            ">=",
            0.8,
            "x",
        ),
        Target(
            "T1",
            f"/ready p99 vs bare at {top} conns, N={cfg.n_mid}",
            mid.paired("p99_ms"),
            "<=",
            1.5,
            "x",
        ),
    ]
    for n in (cfg.n_small, cfg.n_big):
        pair = by[(n, top)]
        out.append(
            Target(
                "T1",
                f"/ready req/s at N={n} vs N={cfg.n_mid} ({top} conns; each as sidecar/bare)",
                pair.paired("rps") / mid.paired("rps"),
                ">=",
                0.9,
                "x",
            )
        )
    # A window of W seconds can hold floor(W / interval) + 1 poll starts: divide by that.
    per_interval = []
    for w in res.idle:
        per_interval.append(w.connect_requests / (w.seconds // w.poll_interval + 1))
    for p in res.loads:
        for reqs, run in zip(p.connect_requests, p.sidecar, strict=True):
            per_interval.append(reqs / (run.seconds // res.poll_interval + 1))
    out.append(
        Target(
            "T2",
            "Connect requests per poll interval (worst window, any probe rate, any N; "
            "window of W s counted as floor(W/interval)+1 intervals)",
            max(per_interval),
            "<=",
            2.0,
        )
    )
    kube = next(w for w in res.idle if w.label == "kubelet")
    side_per_period = kube.sidecar_cpu_s / kube.periods * 1e3
    exec_ms = res.exec_probe.cpu_ms_per_probe if res.exec_probe else float("nan")
    out.append(
        Target(
            "T3",
            f"sidecar CPU per {cfg.kubelet_period:g} s period (N={cfg.n_mid}) / "
            "CPU of 2 exec probes",
            side_per_period / (2 * exec_ms),
            "<=",
            0.5,
            "x",
        )
    )
    big_rss = max(
        v["VmRSS"] for k, v in res.rss_kb.items() if k.startswith(f"sidecar N={cfg.n_big}")
    )
    out.append(
        Target(
            "T4",
            f"sidecar RSS at N={cfg.n_big}x{cfg.tasks} (highest sample, steady or changing "
            "bodies) / bare idle RSS",
            big_rss / res.rss_kb["bare idle"]["VmRSS"],
            "<=",
            1.5,
            "x",
        )
    )
    out.append(
        Target(
            "T5",
            f"CPU per poll + evaluation, N={cfg.n_big}x{cfg.tasks}, body changed every poll",
            res.poll_cpu["changed_ms_per_poll"],
            "<=",
            250.0,
            " ms",
        )
    )
    assert res.latencies is not None
    out.append(
        Target(
            "T5",
            f"worst /ready latency during polls, N={cfg.n_big}x{cfg.tasks}",
            res.latencies.worst_during_poll_ms,
            "<=",
            100.0,
            " ms",
        )
    )
    env = res.envelope
    if env is not None:
        out.append(
            Target(
                "T6",
                f"peak RSS, {env.connectors:,}x{env.tasks} tasks all FAILED with "
                f"{env.trace_bytes / 1000:g} KB traces, {env.body_bytes / MIB:.1f} MiB answers "
                f"changing every poll / the deploy/ memory limit ({env.limit_mib:g} Mi)",
                env.peak_rss_kib / 1024 / env.limit_mib,
                "<=",
                0.75,
                "x",
            )
        )
        out.append(
            Target(
                "T7",
                "worst /ready latency during those polls",
                env.latencies.worst_during_poll_ms,
                "<=",
                100.0,
                " ms",
            )
        )
    return out


def progress_targets(res: Results) -> list[Target]:
    """Issue 14 item 7, when the progress phase ran."""
    pr = res.progress
    if not pr or not pr.get("fake"):
        return []
    fake = pr["fake"]
    tasks = f"{pr['tasks']:,} sink tasks x {pr['partitions'] // max(1, pr['tasks'])} partitions"
    out = [
        Target(
            "P1",
            f"worst /ready latency while progress reads run, {tasks} (fake reader)",
            max(fake["on"]["worst_ready_ms"], fake["on_hammered"]["worst_ready_ms"]),
            "<=",
            100.0,
            " ms",
        ),
        Target(
            "P2",
            "progress reads per window, probes hammered / one kubelet-like client "
            f"({fake['on_hammered']['probes']:,} vs {fake['on']['probes']:,} probes)",
            fake["on_hammered"]["reads"] / max(1.0, fake["on"]["reads"]),
            "<=",
            1.2,
            "x",
        ),
    ]
    real = pr.get("real") or {}
    if "requests_per_read_total" in real:
        out.append(
            Target(
                "P3",
                "Kafka requests per progress read per group "
                f"({real['requests_per_read_total']:,.0f}"
                f" for {real['groups']} groups; real broker; librdkafka's admin API sends them "
                "per group)",
                real["requests_per_read_total"] / real["groups"],
                "<=",
                6.0,
            )
        )
        out.append(
            Target(
                "P4",
                "worst /ready latency with real Kafka reads (real broker)",
                real["on"]["worst_ready_ms"],
                "<=",
                100.0,
                " ms",
            )
        )
    return out


def render_progress(res: Results) -> list[str]:
    """The progress checks' section (issue 14 item 7)."""
    pr = res.progress
    if not pr:
        return []
    fake, real = pr.get("fake") or {}, pr.get("real") or {}
    lines = [
        "## Progress checks: cost at "
        f"{pr['tasks']:,} sink tasks x {pr['partitions'] // max(1, pr['tasks'])} partitions\n",
        f"{pr['connectors']} sink connectors x 4 tasks, all on this worker, one progress read "
        f"every {pr['interval_s']:g} s. Which figure comes from what is in the Source column.\n",
        "| Measure | Value | Source |",
        "|---|---|---|",
    ]
    w = lines.append
    src_f = "fake reader (`bench/progress_sidecar.py`), real sidecar"
    if fake:
        on, off, ham = fake["on"], fake["off"], fake["on_hammered"]
        w(f"| tasks judged | {fake['judged_tasks']:,} | {src_f} |")
        w(
            f"| CPU per progress read (on minus off) | {_f(on.get('cpu_ms_per_read'), 1)} "
            f"ms | {src_f} |"
        )
        w(
            f"| RSS added by the checks (on minus off) | {fake['rss_added_kb'] / 1024:.1f} MiB "
            f"| {src_f} |"
        )
        w(
            f"| RSS off / on | {fake['rss_kb_off']['VmRSS'] / 1024:.1f} / "
            f"{fake['rss_kb_on']['VmRSS'] / 1024:.1f} MiB | {src_f} |"
        )
        w(
            f"| worst / p99 /ready, checks off | {off['worst_ready_ms']:.1f} / "
            f"{off['p99_ready_ms']:.1f} ms ({off['probes']} probes) | {src_f} |"
        )
        w(
            f"| worst / p99 /ready, checks on, {on['reads']:g} reads in the window | "
            f"{on['worst_ready_ms']:.1f} / {on['p99_ready_ms']:.1f} ms ({on['probes']} probes) "
            f"| {src_f} |"
        )
        w(
            f"| same with {ham['hammer_clients']} more clients hammering /ready | "
            f"{ham['worst_ready_ms']:.1f} / {ham['p99_ready_ms']:.1f} ms, {ham['reads']:g} reads "
            f"({ham['probes']:,} probes) | {src_f} |"
        )
        w(
            f"| Connect config reads (group ids, cached 10 min) | "
            f"{fake['connect_config_requests']} | fake Connect's counter |"
        )
    if real.get("error"):
        w(f"| real broker | not measured: {real['error']} | |")
    elif real:
        src_r = f"{real['broker']}, {real['groups']} groups, offsets committed, no members"
        reqs = ", ".join(f"{k} {v:g}" for k, v in real["requests_per_read"].items())
        w(
            f"| Kafka requests per read | {real['requests_per_read_total']:g} ({reqs}) | "
            f"{src_r}; librdkafka statistics of the reader |"
        )
        w(
            f"| CPU / wall per read (in-process reader) | {real['read_cpu_ms_median']:.1f} / "
            f"{real['read_wall_ms_median']:.1f} ms | {src_r} |"
        )
        w(
            f"| RSS added (Kafka client + checks, on minus off) | "
            f"{real['rss_added_kb'] / 1024:.1f} MiB | {src_r}; real sidecar |"
        )
        w(
            f"| worst / p99 /ready with real reads | {real['on']['worst_ready_ms']:.1f} / "
            f"{real['on']['p99_ready_ms']:.1f} ms, {real['on']['reads']:g} reads | {src_r} |"
        )
    w("")
    w(
        "Reads happen on the progress interval only (their own loop and thread): the probes' "
        "rate does not change the number of reads, hence of Kafka requests. Groups without "
        "members (the real-broker setup) need no ListOffsets; with members, one or two "
        "ListOffsets per partition leader are added per read (one broker here)."
    )
    w("")
    return lines


def _f(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{digits}f}"


def render(res: Results, cfg: Config) -> str:
    lines: list[str] = []
    w = lines.append
    w("# Benchmark results (issue 7)\n")
    if cfg.smoke:
        w("**SMOKE RUN** — tiny N, short loads, built-in client: the numbers only prove the")
        w("machinery works; pass/fail below means nothing.\n")
    w(f"Run {res.started}, mode `{res.mode}`, sidecar poll interval {res.poll_interval:g} s, ")
    w(f"load generator `{cfg.load_tool}`, {cfg.reps} repetition(s) per point (median shown).\n")

    w("## Targets\n")
    w("| Target | What | Measured | Needed | Result |")
    w("|---|---|---|---|---|")
    for t in [*targets(res, cfg), *progress_targets(res)]:
        verdict = "PASS" if t.ok else "FAIL"
        w(
            f"| {t.name} | {t.what} | {_f(t.measured)}{t.unit} | {t.op} {t.limit:g}{t.unit} "
            f"| **{verdict}** |"
        )
    w("")

    lines.extend(render_progress(res))

    w("## Throughput and latency of `/ready` (keep-alive connections)\n")
    w(
        "| N connectors | conns | bare req/s | sidecar req/s | ratio | bare p50 ms | "
        "sidecar p50 ms | bare p99 ms | sidecar p99 ms | p99 ratio | Connect reqs / probe "
        "| CPU pressure % |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in res.loads:
        probes = sum(r.requests for r in p.sidecar)
        per_probe = sum(p.connect_requests) / probes if probes else float("nan")
        w(
            f"| {p.connectors:,} | {p.conns} | {p.spread('bare', 'rps', 0)} "
            f"| {p.spread('sidecar', 'rps', 0)} | {p.paired('rps'):.2f} "
            f"| {p.spread('bare', 'p50_ms', 2)} | {p.spread('sidecar', 'p50_ms', 2)} "
            f"| {p.spread('bare', 'p99_ms', 1)} | {p.spread('sidecar', 'p99_ms', 1)} "
            f"| {p.paired('p99_ms'):.2f} | {per_probe:.5f} | {_f(p.pressure(), 0)} |"
        )
    w("")
    w(
        "Runs interleaved (bare, sidecar, bare, sidecar, ...): figures are medians with min to "
        "max in brackets; ratios are medians of the back-to-back pairs' ratios. CPU pressure: "
        "the highest share of a run's time some task waited for a CPU (other processes on the "
        "machine); above ~10 % the p99 figures are mostly noise."
    )
    bad = [r for p in res.loads for r in p.bare + p.sidecar if r.errors or r.non_2xx]
    if bad:
        w(
            f"\nRuns with socket errors or non-2xx answers: {len(bad)} "
            f"({', '.join(f'{r.conns}c: {r.errors} err/{r.non_2xx} non-2xx' for r in bad)})"
        )
    w("")

    w("## CPU, memory, Connect traffic\n")
    ex = res.exec_probe
    w("| Measure | Value |")
    w("|---|---|")
    if ex is None:
        ex = ExecProbe(0, float("nan"), float("nan"), float("nan"), 0, 0, "(curl not installed)")
    w(
        f"| exec probe CPU per probe (sh+curl+grep, children rusage, {ex.runs} runs) "
        f"| {ex.cpu_ms_per_probe:.2f} ms |"
    )
    w(
        f"| exec probe wall per probe (mean / median) | {ex.wall_ms_per_probe:.2f} / "
        f"{ex.wall_ms_p50:.2f} ms |"
    )
    w(f"| exec probe peak RSS (largest child) | {ex.max_rss_kb / 1024:.1f} MiB |")
    w(
        f"| exec probe CPU for one {cfg.kubelet_period:g} s period (2 probes, 1 connector) "
        f"| {2 * ex.cpu_ms_per_probe:.2f} ms |"
    )
    for win in res.idle:
        per = win.sidecar_cpu_s / win.periods * 1e3
        w(
            f"| sidecar CPU per {cfg.kubelet_period:g} s, N={win.connectors:,}, "
            f"{'1 /ready + 1 /live per period' if win.probes else 'no probes'} "
            f"({win.seconds:.0f} s window, {win.polls} polls; stat: "
            f"{win.sidecar_cpu_stat_s / win.periods * 1e3:.1f} ms) | {per:.2f} ms |"
        )
        if win.bare_cpu_s is not None:
            w(
                f"| bare FastAPI (stock uvicorn) CPU per {cfg.kubelet_period:g} s, same probes "
                f"| {win.bare_cpu_s / win.periods * 1e3:.2f} ms |"
            )
        w(
            f"| Connect requests (TCP connections) in that window / requests per poll interval "
            f"| {win.connect_requests} ({win.connect_connections}) / "
            f"{win.connect_requests / (win.seconds // win.poll_interval + 1):.2f} |"
        )
    pc = res.poll_cpu
    w(
        f"| sidecar CPU per poll interval, N={cfg.n_small}, no probes "
        f"({int(pc['baseline_polls'])} polls) | {_f(pc['baseline_ms_per_poll'])} ms |"
    )
    for kind, what in (("unchanged", "body unchanged"), ("changed", "body changed every poll")):
        w(
            f"| CPU per poll, N={cfg.n_big:,}x{cfg.tasks}, {what} "
            f"({int(pc[f'{kind}_polls'])} polls): net of N={cfg.n_small} / gross per interval "
            f"| {_f(pc[f'{kind}_ms_per_poll'])} / {_f(pc[f'{kind}_gross_ms_per_poll'])} ms |"
        )
    lat = res.latencies
    assert lat is not None
    w(
        f"| /ready latency, fresh connections every {cfg.latency_every * 1e3:.0f} ms over "
        f"{lat.polls} polls at N={cfg.n_big:,}: p50 / p99 / worst during polls / worst "
        f"| {lat.p50_ms:.2f} / {lat.p99_ms:.2f} / {_f(lat.worst_during_poll_ms)} / "
        f"{lat.worst_ms:.2f} ms ({lat.probes} probes, {lat.non_200} non-200) |"
    )
    for k, v in res.rss_kb.items():
        w(f"| RSS {k} (VmRSS / VmHWM) | {v['VmRSS'] / 1024:.1f} / {v['VmHWM'] / 1024:.1f} MiB |")
    for k, s in res.startup.items():
        w(
            f"| start to first answer, {k} (first status {s['first_status']}; to first 200) "
            f"| {_f(float(s['first_answer_s'] or 'nan') * 1e3, 0)} ms "
            f"({_f(float(s['first_ok_s'] or 'nan') * 1e3, 0)} ms) |"
        )
    w("")

    if res.envelope is not None:
        env = res.envelope
        w("## The worst day: mass failure at the response cap (T6, T7)\n")
        w("| | |")
        w("|---|---|")
        w(f"| connectors x tasks, all FAILED | {env.connectors:,} x {env.tasks} |")
        w(f"| answer size (differs at every poll) | {env.body_bytes:,} bytes |")
        w(f"| sidecar peak RSS (VmHWM) | {env.peak_rss_kib / 1024:.1f} MiB |")
        w(f"| sidecar RSS at the end | {env.rss_after_kib / 1024:.1f} MiB |")
        w(
            f"| deploy/ memory limit, 75 % of it | {env.limit_mib:g} Mi, "
            f"{0.75 * env.limit_mib:g} Mi |"
        )
        w(
            f"| /ready worst / worst during polls / p99 | {_f(env.latencies.worst_ms)} / "
            f"{_f(env.latencies.worst_during_poll_ms)} / {_f(env.latencies.p99_ms)} ms "
            f"({env.latencies.probes} probes, {env.latencies.polls} polls) |"
        )
        w(f"| sidecar log lines for the whole run | {env.log_lines} |")
        w("")

    w("## Machine and versions\n")
    w("| | |")
    w("|---|---|")
    for key, value in res.machine.items():
        w(f"| {key} | `{value}` |")
    w("")

    w("## Commands\n")
    w("Every server bound to 127.0.0.1 on a free port (the ports below are this run's).\n")
    w("```")
    for name, cmd in res.commands.items():
        w(f"# {name}")
        w(cmd.replace(str(ROOT) + "/", ""))
    w("# exec probe")
    w(ex.command)
    seen: set[str] = set()
    for p in res.loads:
        for r in p.bare + p.sidecar:
            key = re.sub(r":\d+/", ":PORT/", r.command)
            if key not in seen:
                seen.add(key)
                w("# load")
                w(key)
    w("```")
    w("")
    w(
        f"Raw figures: `{(cfg.out.with_suffix('.json')).name}` next to this file "
        "(not committed when under bench/out/)."
    )
    return "\n".join(lines) + "\n"


def _json_default(obj: object) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj))


def write_report(res: Results, cfg: Config, stream: TextIO | None = None) -> None:
    text = render(res, cfg)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(text)
    cfg.out.with_suffix(".json").write_text(
        json.dumps(asdict(res), indent=1, default=_json_default) + "\n"
    )
    if stream is not None:
        stream.write(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds-long run proving the machinery")
    p.add_argument("--out", help="report path (default bench/results.md, smoke: bench/out/)")
    p.add_argument("--logs", help="directory for the servers' logs (default bench/out/logs)")
    p.add_argument("--python", default=str(VENV_BIN / "python"))
    p.add_argument("--sidecar", default=str(VENV_BIN / "connect-probe"))
    p.add_argument("--load-tool", choices=("auto", "wrk", "py"), default="auto")
    p.add_argument("--allow-py-load", action="store_true", help="full run without wrk")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    p.add_argument("--reps", type=int, default=5, help="load runs per point (median kept)")
    p.add_argument("--exec-runs", type=int, default=200)
    p.add_argument("--big", type=int, default=10_000, help="connectors in the large case")
    p.add_argument("--idle-window", type=float, default=60.0)
    p.add_argument("--poll-window-polls", type=int, default=6)
    p.add_argument("--latency-window", type=float, default=30.0)
    p.add_argument("--poll-interval", type=float, help="override the sidecar's default")
    p.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the sidecar (repeatable)",
    )
    p.add_argument("--print", action="store_true", help="print the report on stdout too")
    p.add_argument(
        "--progress-only", action="store_true", help="only the progress checks' cost (issue 14)"
    )
    p.add_argument(
        "--no-real-kafka", action="store_true", help="progress phase without the real broker"
    )
    return p.parse_args(argv)


def progress_only(cfg: Config) -> int:
    """``--progress-only``: the progress phase alone, its section as the report."""
    res = Results(
        mode="progress-only",
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC"),
        poll_interval=cfg.poll_interval or 0.0,
    )
    procs = Procs(cfg.logs)
    try:
        res.progress = progress_phase(procs, cfg)
    finally:
        procs.stop_all()
    text = "\n".join(render_progress(res)) + "\n"
    for t in progress_targets(res):
        text += f"- {t.name} {t.what}: {_f(t.measured)}{t.unit} ({t.op} {t.limit:g}{t.unit}) "
        text += "PASS\n" if t.ok else "FAIL\n"
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(text)
    cfg.out.with_suffix(".json").write_text(json.dumps(res.progress, indent=1) + "\n")
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = make_config(args)
    if args.no_real_kafka:
        cfg = dataclasses.replace(cfg, real_kafka=False)
    if args.progress_only:
        if not args.out:
            cfg = dataclasses.replace(cfg, out=BENCH / "out" / "progress-results.md")
        return progress_only(cfg)
    res = run_bench(cfg)
    write_report(res, cfg, sys.stdout if "--print" in (argv or sys.argv) else None)
    log(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
