"""The cost of the progress checks (issue 14 item 7), a phase of bench/run.py.

Two sources, reported apart:

- **fake reader** (``bench/progress_sidecar.py``): the real sidecar, polling the fake Connect
  (N sink connectors x 4 tasks, all on this worker), with the Kafka reader replaced by one that
  answers every group at once (4 members, 4 partitions each, offsets moving). It measures what
  the checks themselves cost at 1,000 tasks x 4 partitions: CPU per progress read (judging,
  views, metrics), RSS added (sidecar with checks on minus the same sidecar with them off, and
  zero when off: the off sidecar never imports ``app.progress``'s machinery), the worst
  ``/ready`` latency while reads run, and the reads per window at two probe rates.
- **real broker** (full run only; Apache Kafka from ``tools/realconnect``, needs Java and
  Maven): the same N connectors' groups exist with committed offsets on 4 x 4 partitions each
  (created with the admin client: no members, nobody consumes). An in-process ``KafkaReader``
  counts its own Kafka requests per read from librdkafka's statistics; the real sidecar reading
  that broker gives the RSS the Kafka client adds and the worst ``/ready`` latency with real
  reads.
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS = 4
PARTITIONS = 4  # per task
WORKER = "10.0.0.1:8083"
READS_METRIC = "connect_probe_progress_read_duration_seconds"


@dataclass
class ProgressCost:
    connectors: int
    tasks: int
    partitions: int
    interval_s: float
    fake: dict[str, Any] = field(default_factory=dict)
    real: dict[str, Any] = field(default_factory=dict)


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _reads(get: Callable[[int, str], tuple[int, bytes]], port: int) -> tuple[float, float]:
    """(reads, seconds spent reading) so far, from the sidecar's read-duration histogram."""
    _, body = get(port, "/metrics")
    text = body.decode()
    return _metric(text, f"{READS_METRIC}_count"), _metric(text, f"{READS_METRIC}_sum")


def _judged(get: Callable[[int, str], tuple[int, bytes]], port: int) -> int:
    _, body = get(port, "/status")
    progress = json.loads(body).get("progress", {})
    return sum(progress.get("counts", {}).values()) if progress.get("enabled") else 0


@dataclass
class _Window:
    seconds: float
    cpu_s: float
    reads: float
    read_s: float
    probes: int
    worst_ms: float
    p99_ms: float
    non_200: int


def _window(run: Any, side: Any, seconds: float, every: float, hammer: int = 0) -> _Window:
    """CPU of ``side`` over ``seconds`` while one client asks /ready every ``every`` seconds
    (fresh connection each, like the kubelet) and ``hammer`` more ask as fast as they can."""
    stop = time.perf_counter() + seconds
    hammered = [0]

    def hammering() -> None:
        while time.perf_counter() < stop:
            run.http_get(side.port, "/ready", timeout=10)
            hammered[0] += 1

    threads = [threading.Thread(target=hammering, daemon=True) for _ in range(hammer)]
    reads0, read_s0 = _reads(run.http_get, side.port)
    lats: list[float] = []
    bad = 0
    with run.measure_cpu(side.pid) as box:
        for thread in threads:
            thread.start()
        while time.perf_counter() < stop:
            status, lat = run.timed_get(side.port, "/ready", timeout=10)
            lats.append(lat)
            bad += status != 200
            time.sleep(every)
        for thread in threads:
            thread.join(timeout=15)
    reads1, read_s1 = _reads(run.http_get, side.port)
    lats.sort()
    cpu = box[0]
    return _Window(
        seconds=cpu.seconds,
        cpu_s=cpu.cpu_s,
        reads=reads1 - reads0,
        read_s=read_s1 - read_s0,
        probes=len(lats) + hammered[0],
        worst_ms=lats[-1] * 1e3 if lats else float("nan"),
        p99_ms=lats[min(len(lats) - 1, int(0.99 * len(lats)))] * 1e3 if lats else float("nan"),
        non_200=bad,
    )


def _sidecar(run: Any, procs: Any, cfg: Any, fake: Any, label: str, env: dict[str, str]) -> Any:
    port = run.free_port()
    full = run.sidecar_env(cfg, fake, port, cfg.poll_interval, "worker")
    full.update(env)
    if "BENCH_FAKE_KAFKA_TASKS" in env:
        argv = [str(cfg.python), str(run.BENCH / "progress_sidecar.py")]
    else:
        argv = [str(cfg.sidecar)]
    side = procs.start(f"sidecar ({label})", argv, full, port, f"sidecar-progress-{label}")
    run.wait_started(side, "/ready", cfg.start_timeout, want_ok=False)
    return side


def _settle(run: Any, side: Any, tasks: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _judged(run.http_get, side.port) >= tasks and _reads(run.http_get, side.port)[0] >= 2:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{side.name}: the progress checks never judged {tasks} tasks")


def _summary(win: _Window, base: _Window | None) -> dict[str, Any]:
    out = {
        "window_s": round(win.seconds, 2),
        "cpu_s": round(win.cpu_s, 3),
        "reads": win.reads,
        "probes": win.probes,
        "worst_ready_ms": round(win.worst_ms, 2),
        "p99_ready_ms": round(win.p99_ms, 2),
        "non_200": win.non_200,
    }
    if win.reads:
        out["read_wall_ms"] = round(win.read_s / win.reads * 1e3, 1)
    if base is not None and win.reads:
        extra = win.cpu_s / win.seconds - base.cpu_s / base.seconds
        out["cpu_ms_per_read"] = round(extra * win.seconds / win.reads * 1e3, 1)
    return out


def run_fake(run: Any, procs: Any, cfg: Any, n: int, interval: float) -> dict[str, Any]:
    """Checks off vs on (fake reader) over the same fake Connect; see the module docstring."""
    tasks = n * TASKS
    fake = run.start_fake(procs, cfg, n, TASKS, label=f"sinks-{n}", workers=WORKER, sinks=True)
    windows = 6 if not cfg.smoke else 2
    seconds = interval * windows
    out: dict[str, Any] = {"source": "fake reader (no Kafka client), real sidecar"}
    off = _sidecar(run, procs, cfg, fake, "off", {})
    run.wait_started(off, "/ready", cfg.start_timeout)
    time.sleep(interval)
    off_win = _window(run, off, seconds, cfg.latency_every)
    out["rss_kb_off"] = run.rss_kb(off.pid)
    out["off"] = _summary(off_win, None)
    procs.stop(off)
    run.fake_stats(fake, reset=True)
    on = _sidecar(
        run,
        procs,
        cfg,
        fake,
        "fake-reader",
        {
            "BENCH_FAKE_KAFKA_TASKS": str(TASKS),
            "BENCH_FAKE_KAFKA_PARTITIONS": str(PARTITIONS),
            "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "CONNECT_PROBE_PROGRESS_INTERVAL": f"{interval:g}",
        },
    )
    _settle(run, on, tasks, cfg.start_timeout)
    on_win = _window(run, on, seconds, cfg.latency_every)
    hammer = 4 if not cfg.smoke else 2
    fast_win = _window(run, on, seconds, cfg.latency_every, hammer=hammer)
    out["rss_kb_on"] = run.rss_kb(on.pid)
    out["on"] = _summary(on_win, off_win)
    out["on_hammered"] = _summary(fast_win, None) | {"hammer_clients": hammer}
    out["judged_tasks"] = _judged(run.http_get, on.port)
    out["connect_config_requests"] = int(
        run.fake_stats(fake)["by_route"].get("connector_config", 0)
    )
    out["rss_added_kb"] = out["rss_kb_on"]["VmRSS"] - out["rss_kb_off"]["VmRSS"]
    procs.stop(on)
    procs.stop(fake)
    return out


# ------------------------------------------------------------------------------- real broker


def _requests_by_type(stats: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for broker in stats.get("brokers", {}).values():
        for kind, count in (broker.get("req") or {}).items():
            if count:
                total[kind] = total.get(kind, 0) + int(count)
    return total


def run_real(run: Any, procs: Any, cfg: Any, n: int, interval: float) -> dict[str, Any]:
    """Against a real Apache Kafka broker (tools/realconnect); see the module docstring."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from app.progress.kafka import KafkaReader, client_config
    from app.settings import Settings
    from tools.realconnect.artifacts import DEFAULT_CONNECT, ensure_artifacts
    from tools.realconnect.cluster import RunDir, start_broker
    from tools.realconnect.procs import stop_all

    out: dict[str, Any] = {"source": "real Apache Kafka broker, real KafkaReader / sidecar"}
    artifacts = ensure_artifacts([DEFAULT_CONNECT], log=run.log)
    rundir = RunDir("bench-progress")
    fake = None
    try:
        broker = start_broker(artifacts, rundir)
        out["broker"] = f"Apache Kafka {artifacts.broker_version}, 127.0.0.1, KRaft, 1 node"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        names = [f"conn-{i:05d}" for i in range(n)]
        started = time.monotonic()
        per_topic = TASKS * PARTITIONS
        for chunk in range(0, n, 50):
            futures = admin.create_topics(
                [NewTopic(f"topic-{name}", per_topic, 1) for name in names[chunk : chunk + 50]]
            )
            for future in futures.values():
                future.result(120)
        for i, name in enumerate(names):
            parts = [TopicPartition(f"topic-{name}", p, 0) for p in range(per_topic)]
            for attempt in range(10):  # the first one waits for __consumer_offsets to exist
                try:
                    admin.alter_consumer_group_offsets(
                        [ConsumerGroupTopicPartitions(f"connect-{name}", parts)],
                        request_timeout=30,
                    )[f"connect-{name}"].result(60)
                    break
                except KafkaException:
                    if i > 0 or attempt == 9:
                        raise
                    time.sleep(2)
        out["setup_s"] = round(time.monotonic() - started, 1)
        out["groups"] = n
        out["partitions_committed"] = n * per_topic

        settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
        reader = KafkaReader(settings)
        stats: list[dict[str, Any]] = []
        config = client_config(settings) | {
            "statistics.interval.ms": 100,
            "stats_cb": lambda text: stats.append(json.loads(text)),
        }
        reader._admin = AdminClient(config)
        groups = [f"connect-{name}" for name in names]

        def requests_now() -> dict[str, int]:
            # Statistics come every 100 ms and poll() serves one queued callback at a time:
            # drain the queue so that the last one seen is the newest.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                reader._admin.poll(0.02)  # type: ignore[union-attr]
            return _requests_by_type(stats[-1]) if stats else {}

        reader.read(groups, 10.0)  # connections, metadata, coordinator lookups
        before = requests_now()
        cpu, wall = [], []
        reads = 3
        for _ in range(reads):
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            reader.read(groups, 10.0)
            r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            cpu.append((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime))
            wall.append(t1 - t0)
        after = requests_now()
        per_read = {k: (after.get(k, 0) - before.get(k, 0)) / reads for k in after}
        out["requests_per_read"] = {k: v for k, v in sorted(per_read.items()) if v}
        # librdkafka's statistics leave OffsetFetch out; the reader makes one call (one
        # request) per group, each after its own FindCoordinator (counted above).
        out["requests_per_read"]["OffsetFetch (one per group, not in the statistics)"] = n
        out["requests_per_read_total"] = sum(out["requests_per_read"].values())
        out["read_cpu_ms_median"] = round(statistics.median(cpu) * 1e3, 1)
        out["read_wall_ms_median"] = round(statistics.median(wall) * 1e3, 1)

        fake = run.start_fake(procs, cfg, n, TASKS, label=f"sinks-{n}", workers=WORKER, sinks=True)
        off = _sidecar(run, procs, cfg, fake, "off-real", {})
        run.wait_started(off, "/ready", cfg.start_timeout)
        time.sleep(interval)
        out["rss_kb_off"] = run.rss_kb(off.pid)
        procs.stop(off)
        on = _sidecar(
            run,
            procs,
            cfg,
            fake,
            "real-kafka",
            {
                "CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "CONNECT_PROBE_PROGRESS_INTERVAL": f"{interval:g}",
                "CONNECT_PROBE_NOT_CONSUMING_GRACE": "3600",
            },
        )
        _settle(run, on, n * TASKS, cfg.start_timeout)
        win = _window(run, on, interval * 6, cfg.latency_every)
        out["on"] = _summary(win, None)
        out["rss_kb_on"] = run.rss_kb(on.pid)
        out["rss_added_kb"] = out["rss_kb_on"]["VmRSS"] - out["rss_kb_off"]["VmRSS"]
        procs.stop(on)
    finally:
        if fake is not None:
            procs.stop(fake)
        stop_all()
        rundir.remove()
    return out


def run_phase(run: Any, procs: Any, cfg: Any, real_kafka: bool) -> ProgressCost:
    n = 5 if cfg.smoke else 250
    interval = 0.3 if cfg.smoke else 2.0
    cost = ProgressCost(n, n * TASKS, n * TASKS * PARTITIONS, interval)
    run.log(f"progress checks: fake reader, {n} sink connectors x {TASKS} tasks x {PARTITIONS}")
    cost.fake = run_fake(run, procs, cfg, n, interval)
    run.log(f"progress (fake reader): {cost.fake}")
    if real_kafka and not cfg.smoke:
        run.log(f"progress checks: real broker, {n} groups")
        try:
            cost.real = run_real(run, procs, cfg, n, interval)
        except Exception as exc:  # Java/Maven missing: say so in the report, keep the rest
            where = traceback.extract_tb(exc.__traceback__)[-1]
            cost.real = {
                "error": f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:"
                f"{where.lineno})"[:500]
            }
        run.log(f"progress (real broker): {cost.real}")
    return cost
