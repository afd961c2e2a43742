"""Soak: a real ``connect-probe`` under steady probe load while its Connect flaps and misbehaves.

    .venv/bin/python bench/soak.py                   # 10 minutes (SOAK_SECONDS / --seconds)
    .venv/bin/python bench/soak.py --seconds 60      # a short run; the figures mean less

For ``--seconds`` it probes at ``--rate`` requests per second (default 250: /ready 70 %, /live 25 %,
/healthz and /status the rest; keep-alive connections plus one new connection per request for 10 %
of them, as the kubelet does) while ``tools.fakeconnect.faulty.FaultyConnect`` flips connector
states every two seconds and injects every upstream fault of issue 6 in turn (on for 1.5 s, off for
1.5 s), and hostile requests arrive on the sidecar's own port (oversized head, garbage, idle
connections, wrong method). The first full round of faults is the warm-up.

Passes when: no error other than the intended 503s (an error is a transport error, a timeout, any
status but 200/503 on /ready and /live, 200 on /healthz and /status, a body that is not the
documented JSON, or a hostile request answered otherwise than expected); RSS after the run is
within 5 % of RSS after the warm-up (both taken after 3 quiet seconds); open file descriptors back
to their warm-up count; no traceback or unhandled exception in the sidecar's log; exit 0 on
SIGTERM; /live never 503 (every fault is far shorter than LIVE_GRACE, so a 503 would mean the
sidecar stopped reaching a healthy Connect: the wedged connection pool this soak once found).
Writes ``bench/soak-results.md`` (``--out``) and exits 1 when a criterion fails.
"""

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import msgspec
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.wire import ProbeBody  # noqa: E402
from tools.fakeconnect.bodies import OTHER_WORKER, THIS_WORKER, status  # noqa: E402
from tools.fakeconnect.faulty import FAULTS, ODD_NAMES, FaultyConnect  # noqa: E402
from tools.procs import cpu_seconds, proc_status, run_sidecar  # noqa: E402

MIB = 1024 * 1024
POLL_INTERVAL = 0.5
TIMEOUT = 1.0
CLIENT_TIMEOUT = 2.0  # a probe slower than this is an error (the kubelet's default is 1 s)
FAULT_ON, FAULT_OFF = 1.5, 1.5
FLAP_EVERY = 2.0
HOSTILE_EVERY = 5.0
SAMPLE_EVERY = 5.0
QUIET = 3.0
RSS_GROWTH_LIMIT = 0.05
LOG_PATTERNS = re.compile(r"Traceback|Unhandled|unhandled|Exception in|ERROR")


def say(message: str) -> None:
    sys.stderr.write(f"[soak {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --- the process, from /proc ------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss: int  # bytes
    hwm: int  # peak RSS so far, bytes
    fds: int
    threads: int
    cpu: float  # seconds of CPU used so far


def sample(pid: int, at: float) -> Sample:
    values = proc_status(pid, ("VmRSS", "VmHWM", "Threads"))
    cpu = cpu_seconds(pid)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Sample(at, values["VmRSS"] * 1024, values["VmHWM"] * 1024, fds, values["Threads"], cpu)


# --- probe load -------------------------------------------------------------------------------
@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)  # "GET /ready 503"
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, latency)
    windows: list[tuple[float, float, str]] = field(default_factory=list)  # fault on, off, name
    behind: int = 0  # requests not sent because 64 were already in flight
    hostile: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # "/ready connect_timeout" (503s)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{kind}: {detail[:300]}")


PATHS = ("/ready",) * 70 + ("/live",) * 25 + ("/healthz",) * 4 + ("/status",)


def check(path: str, response: httpx.Response, stats: Stats) -> None:
    status = response.status_code
    stats.requests[f"GET {path} {status}"] += 1
    if path in ("/ready", "/live"):
        if status not in (200, 503):
            stats.error(f"{path} {status}", response.text)
            return
        try:
            body = msgspec.json.decode(response.content, type=ProbeBody)
        except ValidationError as exc:
            stats.error(f"{path} bad body", f"{exc}: {response.text}")
            return
        if body.ok != (status == 200) or (status == 503 and not body.reasons):
            stats.error(f"{path} inconsistent", response.text)
        elif status == 503:
            stats.reasons[f"{path} {body.reasons[0].code}"] += 1
        elif len(response.content) > 10 * 1024:
            stats.error(f"{path} body over 10 KiB", str(len(response.content)))
    elif status != 200:
        stats.error(f"{path} {status}", response.text)
    elif path == "/status":
        try:
            msgspec.json.decode(response.content)
        except msgspec.MsgspecError as exc:
            stats.error("/status bad body", str(exc))


async def one(client: httpx.AsyncClient, path: str, stats: Stats) -> None:
    started = time.perf_counter()
    try:
        response = await client.get(path)
    except httpx.HTTPError as exc:
        stats.error(f"{path} {type(exc).__name__}", str(exc))
        return
    latency = time.perf_counter() - started
    stats.latencies.setdefault(path, []).append(latency)
    stats.timeline.append((time.monotonic(), latency))
    check(path, response, stats)


async def load(url: str, rate: float, seconds: float, stats: Stats) -> None:
    """``rate`` requests per second for ``seconds``, at most 64 in flight."""
    timeout = httpx.Timeout(CLIENT_TIMEOUT)
    kept = httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=8))
    fresh = httpx.AsyncClient(
        base_url=url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)
    )
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()
    rng = random.Random(6)
    try:
        start = next_at = loop.time()
        while next_at < start + seconds:
            next_at += 1.0 / rate
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= 64:
                stats.behind += 1
                continue
            client = fresh if rng.random() < 0.1 else kept
            task = asyncio.create_task(one(client, rng.choice(PATHS), stats))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=CLIENT_TIMEOUT * 2)
    finally:
        await kept.aclose()
        await fresh.aclose()


def receive(receiver: Connection, timeout: float) -> Stats:
    if not receiver.poll(timeout):
        raise RuntimeError(f"the load process sent nothing within {timeout:.0f}s")
    stats: Stats = receiver.recv()
    return stats


def load_process(url: str, rate: float, seconds: float, sender: Connection) -> None:
    """The load generator's process: run ``load`` and send back its ``Stats``."""
    stats = Stats()
    asyncio.run(load(url, rate, seconds, stats))
    sender.send(stats)
    sender.close()


# --- hostile requests on the sidecar's own port -----------------------------------------------
def _raw(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(data)
        if not read:
            return b""
        try:
            return sock.recv(200)
        except OSError as exc:
            return repr(exc).encode()


HOSTILE: dict[str, tuple[bytes, tuple[bytes, ...]]] = {
    # name: (request, acceptable starts of the answer)
    "32 KiB header": (
        b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 32 * 1024 + b"\r\n\r\n",
        (b"HTTP/1.1 431", b"ConnectionResetError"),
    ),
    "100 KiB URL": (
        b"GET /ready?" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        (b"HTTP/1.1 414", b"ConnectionResetError"),
    ),
    "garbage": (
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64),
        (b"HTTP/1.1 400",),
    ),
    "POST /ready": (
        b"POST /ready HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        (b"HTTP/1.1 405",),
    ),
    "odd query": (
        b"GET /ready?x=%00&&&=&x=1&x=2 HTTP/1.1\r\nHost: x\r\n\r\n",
        (b"HTTP/1.1 200", b"HTTP/1.1 503"),
    ),
    "unknown path": (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", (b"HTTP/1.1 404",)),
}


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


async def hostile(port: int, seconds: float, stats: Stats) -> None:
    """Every HOSTILE_EVERY seconds: each hostile request once, and 10 connections that say
    nothing: three rounds (15 s) later the sidecar must have closed them (HEAD_TIMEOUT 10 s)."""
    idle: list[list[socket.socket]] = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for name, (request, expected) in HOSTILE.items():
                answer = await asyncio.to_thread(_raw, port, request)
                stats.hostile[name] += 1
                if not answer.startswith(expected):
                    stats.error(f"hostile {name}", repr(answer[:100]))
            idle.append(
                [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(10)]
            )
            stats.hostile["silent connection"] += 10
            if len(idle) > 3:
                for sock in idle.pop(0):
                    if not _closed_by_peer(sock):
                        stats.error("silent connection", "still open 15 s later")
                    sock.close()
            await asyncio.sleep(HOSTILE_EVERY)
    finally:
        for batch in idle:
            for sock in batch:
                sock.close()


# --- Connect flapping and faults --------------------------------------------------------------
def cluster(rng: random.Random, states: dict[str, str]) -> dict[str, dict[str, Any]]:
    connectors = {
        name: status(name, state, THIS_WORKER if index % 2 == 0 else OTHER_WORKER, tasks=3)
        for index, (name, state) in enumerate(states.items())
    }
    for name in rng.sample(ODD_NAMES, 2):  # odd names come and go
        connectors[name] = status(name, rng.choice(("RUNNING", "FAILED")), tasks=1)
    return connectors


async def flap(fake: FaultyConnect, seconds: float, stats: Stats) -> None:
    rng = random.Random(7)
    states = {f"soak-{index:02d}": "RUNNING" for index in range(40)}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name in states:  # the previous flip heals: one object at a time is off RUNNING
            states[name] = "RUNNING"
        name = rng.choice(list(states))
        states[name] = rng.choice(("RUNNING", "FAILED", "PAUSED", "UNASSIGNED"))
        fake.set_connectors(cluster(rng, states))
        stats.hostile["state flips"] += 1
        await asyncio.sleep(FLAP_EVERY)


async def faults(
    fake: FaultyConnect,
    until: float,
    order: list[str],
    injected: Counter[str],
    windows: list[tuple[float, float, str]],
) -> None:
    """Each fault in ``order`` for FAULT_ON seconds, then FAULT_OFF healthy, until ``until``."""
    index = 0
    while time.monotonic() + FAULT_ON + FAULT_OFF <= until:
        fault = order[index % len(order)]
        index += 1
        await asyncio.to_thread(fake.set_fault, fault)
        injected[fault] += 1
        began = time.monotonic()
        await asyncio.sleep(FAULT_ON)
        await asyncio.to_thread(fake.set_fault, None)
        windows.append((began, time.monotonic() + TIMEOUT, fault))  # + the poll in flight
        await asyncio.sleep(FAULT_OFF)


# --- the run ----------------------------------------------------------------------------------
@dataclass
class Result:
    seconds: float
    rate: float
    warmup: float
    stats: Stats
    samples: list[Sample]
    start: Sample
    warm: Sample
    end: Sample
    injected: Counter[str]
    log_hits: list[str]
    log_lines: int
    log_warnings: Counter[str]
    exit_code: int | None
    faulty_requests: int
    load: tuple[float, float]  # the host's 1-minute load average at the start and at the end

    @property
    def growth(self) -> float:
        return (self.end.rss - self.warm.rss) / self.warm.rss

    def checks(self) -> list[tuple[str, bool, str]]:
        achieved = sum(self.stats.requests.values()) / self.seconds
        return [
            ("probe rate >= 200 req/s", achieved >= 200, f"{achieved:.0f} req/s"),
            (
                "errors other than the intended 503s",
                not self.stats.errors,
                str(sum(self.stats.errors.values())),
            ),
            (
                "RSS growth after warm-up < 5 %",
                self.growth < RSS_GROWTH_LIMIT,
                f"{self.growth * 100:+.1f} %",
            ),
            (
                "open fds back to the warm-up count",
                self.end.fds <= self.warm.fds + 2,
                f"{self.warm.fds} -> {self.end.fds} (max {max(s.fds for s in self.samples)})",
            ),
            (
                "no traceback / unhandled exception in the log",
                not self.log_hits,
                str(len(self.log_hits)),
            ),
            ("exit 0 on SIGTERM", self.exit_code == 0, str(self.exit_code)),
            # Faults last FAULT_ON seconds, far below LIVE_GRACE: a /live 503 would be the sidecar
            # lying (a wedged client, say) and the kubelet restarting a healthy Connect.
            (
                "/live never 503 (each fault is shorter than LIVE_GRACE)",
                not any(key.startswith("/live ") for key in self.stats.reasons),
                str(sum(n for key, n in self.stats.reasons.items() if key.startswith("/live "))),
            ),
        ]


async def drive(
    url: str, pid: int, fake: FaultyConnect, seconds: float, rate: float
) -> tuple[Stats, list[Sample], Sample, Sample, Sample, float, Counter[str]]:
    stats = Stats()
    samples: list[Sample] = []
    injected: Counter[str] = Counter()
    order = list(FAULTS)
    random.Random(8).shuffle(order)
    warmup = min(len(order) * (FAULT_ON + FAULT_OFF), seconds / 2)
    loop = asyncio.get_running_loop()
    t0, t0_wall = loop.time(), time.monotonic()
    start = sample(pid, 0.0)

    async def sampler() -> None:
        while True:
            samples.append(sample(pid, loop.time() - t0))
            await asyncio.sleep(SAMPLE_EVERY)

    async def fault_phases() -> tuple[Sample, Sample]:
        """Warm-up round, 3 quiet seconds, sample; the rest, 3 quiet seconds, sample."""
        await faults(fake, time.monotonic() + warmup, order, injected, stats.windows)
        await asyncio.sleep(QUIET)  # a healthy Connect; probes, flaps and hostile input go on
        warm = sample(pid, loop.time() - t0)
        say(f"warm-up done after {warm.at:.0f}s: RSS {warm.rss / MIB:.1f} MiB, {warm.fds} fds")
        await faults(fake, t0_wall + seconds - 2 * QUIET, order, injected, stats.windows)
        await asyncio.sleep(max(QUIET, t0_wall + seconds - QUIET - time.monotonic()))
        end = sample(pid, loop.time() - t0)
        say(f"end after {end.at:.0f}s: RSS {end.rss / MIB:.1f} MiB, {end.fds} fds")
        return warm, end

    # The probe load runs in its own process: in this one the fake Connect's thread streams
    # 200 MB bodies, and sharing a GIL with it would add its delays to the measured latencies.
    receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
    loader = multiprocessing.get_context("spawn").Process(
        target=load_process, args=(url, rate, seconds, sender), name="soak-load"
    )
    loader.start()
    background = [asyncio.create_task(sampler())]
    try:
        async with asyncio.TaskGroup() as group:
            # Receive before joining: the stats are larger than a pipe's buffer.
            received = group.create_task(asyncio.to_thread(receive, receiver, seconds + 30))
            group.create_task(flap(fake, seconds, stats))
            group.create_task(hostile(int(url.rsplit(":", 1)[1]), seconds, stats))
            phases = group.create_task(fault_phases())
        loaded = received.result()
        loader.join(10)
    finally:
        for task in background:
            task.cancel()
        if loader.is_alive():
            loader.kill()  # by its PID, through the Process object
            loader.join(5)
    stats.requests.update(loaded.requests)
    stats.errors.update(loaded.errors)
    stats.error_samples[:0] = loaded.error_samples
    stats.latencies = loaded.latencies
    stats.reasons = loaded.reasons
    stats.timeline = loaded.timeline
    stats.behind = loaded.behind
    warm, end = phases.result()
    samples.append(end)
    return stats, samples, start, warm, end, warmup, injected


def scan_log(text: str) -> tuple[list[str], Counter[str]]:
    hits = [line for line in text.splitlines() if LOG_PATTERNS.search(line)]
    warnings: Counter[str] = Counter()
    for line in text.splitlines():
        match = re.search(r" (WARNING|INFO) +([\w.]+): (.{0,60})", line)
        if match and match.group(1) == "WARNING":
            warnings[f"{match.group(2)}: {re.sub(r'[0-9]+', 'N', match.group(3))}"] += 1
    return hits, warnings


def run(seconds: float, rate: float) -> Result:
    load_start = os.getloadavg()[0]
    with FaultyConnect() as fake, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        fake.set_connectors(cluster(random.Random(1), {"soak-00": "RUNNING"}))
        env = {
            "CONNECT_PROBE_CONNECT_URL": fake.url,
            "CONNECT_PROBE_WORKER_ID": THIS_WORKER,
            "CONNECT_PROBE_POLL_INTERVAL": str(POLL_INTERVAL),
            "CONNECT_PROBE_TIMEOUT": str(TIMEOUT),
            "CONNECT_PROBE_TRANSIENT_GRACE": "5",
            **{
                k.removeprefix("SOAK_ENV_"): v
                for k, v in os.environ.items()
                if k.startswith("SOAK_ENV_")
            },
        }
        with run_sidecar(env, Path(tmp)) as sidecar:
            pid = sidecar.process.pid
            say(f"connect-probe pid {pid} on {sidecar.url}; fake Connect on {fake.url}")
            stats, samples, start, warm, end, warmup, injected = asyncio.run(
                drive(sidecar.url, pid, fake, seconds, rate)
            )
            sidecar.process.send_signal(signal.SIGTERM)
            try:
                exit_code: int | None = sidecar.process.wait(15)
            except subprocess.TimeoutExpired:
                exit_code = None
            log = sidecar.output()
            kept = ROOT / "bench" / "out" / "soak-sidecar.log"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(log, encoding="utf-8")
        hits, warnings = scan_log(log)
        return Result(
            seconds=seconds,
            rate=rate,
            warmup=warmup,
            stats=stats,
            samples=samples,
            start=start,
            warm=warm,
            end=end,
            injected=injected,
            log_hits=hits,
            log_lines=len(log.splitlines()),
            log_warnings=warnings,
            exit_code=exit_code,
            faulty_requests=fake.requests,
            load=(load_start, os.getloadavg()[0]),
        )


# --- the report -------------------------------------------------------------------------------
def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def latency_by_fault(stats: Stats) -> list[str]:
    """Probe latencies (all paths) while each fault was on (until TIMEOUT after it went off)."""
    by_fault: dict[str, list[float]] = {}
    windows = sorted(stats.windows)
    index = 0
    for moment, latency in sorted(stats.timeline):
        while index < len(windows) and windows[index][1] < moment:
            index += 1
        inside = index < len(windows) and windows[index][0] <= moment
        by_fault.setdefault(windows[index][2] if inside else "(none)", []).append(latency)
    lines = [
        "",
        "Latency by Connect fault (all probe paths):",
        "",
        "| fault | probes | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for name, values in sorted(by_fault.items(), key=lambda item: -max(item[1])):
        lines.append(
            f"| {name} | {len(values)} | {_ms(values, 0.5)} | {_ms(values, 0.99)} | "
            f"{max(values) * 1000:.1f} |"
        )
    return lines


def report(result: Result) -> str:
    stats = result.stats
    total = sum(stats.requests.values())
    lines = [
        "# Soak results (issue 6)",
        "",
        f"Written by `bench/soak.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"host: {os.cpu_count()} CPUs (load average {result.load[0]:.1f} at the start, "
        f"{result.load[1]:.1f} at the end: other work shares them), "
        f"Python {sys.version.split()[0]}.",
        f"Run: {result.seconds:.0f} s of probes at a target {result.rate:.0f} req/s against a real "
        f"`connect-probe` (POLL_INTERVAL {POLL_INTERVAL}, TIMEOUT {TIMEOUT}); warm-up = the first "
        f"round of all {len(FAULTS)} faults ({result.warmup:.0f} s). Connect flapped a connector "
        f"state every {FLAP_EVERY:g} s and had a fault {FAULT_ON:g} s on / {FAULT_OFF:g} s off.",
        "",
        "| check | result | figure |",
        "|---|---|---|",
    ]
    for name, ok, figure in result.checks():
        lines.append(f"| {name} | {'pass' if ok else '**FAIL**'} | {figure} |")
    lines += [
        "",
        "## Memory and descriptors",
        "",
        "| moment | t (s) | RSS (MiB) | open fds | threads | CPU used (s) |",
        "|---|---|---|---|---|---|",
    ]
    for label, moment in (
        ("start", result.start),
        ("after warm-up", result.warm),
        ("end", result.end),
    ):
        lines.append(
            f"| {label} | {moment.at:.0f} | {moment.rss / MIB:.1f} | {moment.fds} | "
            f"{moment.threads} | {moment.cpu:.1f} |"
        )
    rss = [s.rss / MIB for s in result.samples]
    fds = [s.fds for s in result.samples]
    lines += [
        "",
        f"RSS over {len(result.samples)} samples every {SAMPLE_EVERY:g} s: min {min(rss):.1f}, "
        f"median {statistics.median(rss):.1f}, max {max(rss):.1f} MiB; peak RSS (VmHWM) "
        f"{result.end.hwm / MIB:.1f} MiB (the 64 MiB-capped 200 MB body). "
        f"Open fds: min {min(fds)}, max {max(fds)}. "
        f"CPU: {result.end.cpu - result.start.cpu:.1f} s over the run "
        f"({(result.end.cpu - result.start.cpu) / max(result.end.at, 1) * 100:.0f} % of one core).",
        "",
        "## Probes",
        "",
        f"{total} requests ({total / result.seconds:.0f}/s achieved, {stats.behind} skipped "
        f"because 64 were in flight); errors: {sum(stats.errors.values())}.",
        "",
        "| answer | count |",
        "|---|---|",
    ]
    lines += [f"| {key} | {count} |" for key, count in sorted(stats.requests.items())]
    lines += ["", "| path | p50 ms | p99 ms | p99.9 ms | max ms |", "|---|---|---|---|---|"]
    for path, values in sorted(stats.latencies.items()):
        lines.append(
            f"| {path} | {_ms(values, 0.5)} | {_ms(values, 0.99)} | {_ms(values, 0.999)} | "
            f"{max(values) * 1000:.1f} |"
        )
    lines += ["", "First reason of the 503s:", "", "| probe and reason | count |", "|---|---|"]
    lines += [f"| {key} | {count} |" for key, count in stats.reasons.most_common()]
    lines += latency_by_fault(stats)
    if stats.errors:
        lines += ["", "Errors:", ""] + [
            f"- {kind}: {count}" for kind, count in stats.errors.items()
        ]
        lines += ["", "First samples:", ""] + [f"- `{text}`" for text in stats.error_samples]
    lines += [
        "",
        "## Injected",
        "",
        f"Connect faults ({sum(result.injected.values())} injections, {result.faulty_requests} "
        "requests to the fake): "
        + ", ".join(f"{name}: {count}" for name, count in sorted(result.injected.items())),
        "",
        "On the sidecar's port: "
        + ", ".join(f"{name}: {count}" for name, count in sorted(stats.hostile.items())),
        "",
        "## Log",
        "",
        f"{result.log_lines} lines; lines matching `{LOG_PATTERNS.pattern}`: "
        f"{len(result.log_hits)}.",
    ]
    lines += [f"- `{hit[:200]}`" for hit in result.log_hits[:10]]
    if result.log_warnings:
        lines += ["", "Warnings by kind (digits as N):", ""]
        lines += [f"- {kind}: {count}" for kind, count in result.log_warnings.most_common(15)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 250)))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "soak-results.md")
    args = parser.parse_args()
    if args.seconds < 20:
        parser.error("--seconds must be at least 20")
    say(f"soak for {args.seconds:.0f}s at {args.rate:.0f} req/s")
    result = run(args.seconds, args.rate)
    text = report(result)
    args.out.write_text(text, encoding="utf-8")
    failed = [name for name, ok, _ in result.checks() if not ok]
    for name, ok, figure in result.checks():
        say(f"{'pass' if ok else 'FAIL'}: {name}: {figure}")
    say(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
