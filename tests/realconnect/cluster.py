"""Start the in-memory broker and real Kafka Connect 3.9 workers (distributed mode) on loopback.

Each :class:`ConnectCluster` is one Connect group (own ``group.id`` and internal topics) on a
shared :class:`Broker`; its :class:`Worker` processes listen on free ``127.0.0.1`` ports and
advertise ``127.0.0.1:PORT``, so ``worker_id == "127.0.0.1:PORT"``. Logs, configs and log4j2
settings are written to a per-run directory (:class:`RunDir`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.realconnect.artifacts import Artifacts, require_java
from tests.realconnect.procs import ManagedProcess
from tests.realconnect.rest import ConnectClient
from tests.realconnect.wait import GiveUp, WaitTimeout, wait_until

LOGS_ENV = "CONNECT_PROBE_REALCONNECT_LOGS"
DEFAULT_LOGS = Path(__file__).resolve().parent / "logs"  # git-ignored
KEEP_RUNS = 10

# Small, quick-starting JVMs (2-core CI machines): serial GC, C1 only, small heaps.
JVM_COMMON = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
BROKER_JVM = ("-Xms32m", "-Xmx128m")
WORKER_JVM = ("-Xms64m", "-Xmx512m")
# Logged by ConnectDistributed when startup fails (e.g. its port is taken).
FATAL_STARTUP_ERROR = "Stopping due to error (org.apache.kafka.connect.cli.AbstractConnectCli)"
# JVM system property naming the worker; the test plugin's fail.task.on.worker compares it.
WORKER_ID_PROPERTY = "realconnect.worker.id"

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.connect.name = org.apache.kafka.connect
logger.connect.level = INFO
logger.isolation.name = org.apache.kafka.connect.runtime.isolation
logger.isolation.level = WARN
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""

_used_ports: set[int] = set()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (not handed out before in this process)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class RunDir:
    """``<logs>/<prefix>-<time>-<pid>/``: every log and config of one run. Old runs are pruned."""

    def __init__(self, prefix: str = "run", base: Path | None = None) -> None:
        base = base or Path(os.environ.get(LOGS_ENV) or DEFAULT_LOGS)
        base.mkdir(parents=True, exist_ok=True)
        runs = sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - KEEP_RUNS + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        self.path = base / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.path.mkdir()

    def __str__(self) -> str:
        return str(self.path)

    def sub(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class Broker:
    """The in-memory Kafka-protocol broker (``MiniKafkaBroker.java``)."""

    proc: ManagedProcess
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def start_broker(
    artifacts: Artifacts,
    run: RunDir,
    *,
    name: str = "broker",
    initial_rebalance_delay_ms: int = 0,
    timeout: float = 30.0,
) -> Broker:
    """Starts the broker on a free port (it binds port 0 itself) and waits until it listens.

    ``initial_rebalance_delay_ms`` delays the first rebalance of an empty group, like Kafka's
    ``group.initial.rebalance.delay.ms`` (3 s in a real broker, 0 here by default): a worker then
    stays in its "REST up, /health 503 starting" phase at least that long.
    """
    java = require_java("java")
    port_file = run.path / f"{name}.port"
    cmd = [
        java, *JVM_COMMON, *BROKER_JVM,
        "-Dslf4j.provider=org.slf4j.helpers.NOP_SLF4JServiceProvider",
        "-cp", artifacts.broker_classpath, "MiniKafkaBroker",
        "--port", "0", "--port-file", str(port_file), "--cluster-id", f"realconnect-{name}",
        "--initial-rebalance-delay-ms", str(initial_rebalance_delay_ms),
    ]  # fmt: skip
    proc = ManagedProcess(name, cmd, run.path / f"{name}.log")

    def listening() -> int | None:
        if not proc.alive:
            raise _died(proc)
        text = port_file.read_text().strip() if port_file.exists() else ""
        return int(text) if text and port_open(int(text)) else None

    try:
        port = wait_until(listening, timeout=timeout, interval=0.05, what=f"{name} to listen")
    except BaseException:
        proc.stop()
        raise
    return Broker(proc, port)


class ProcessDied(GiveUp):
    """A process the harness waits for exited; the message has its log's tail."""


def _died(proc: ManagedProcess) -> ProcessDied:
    return ProcessDied(
        f"{proc.name} (pid {proc.pid}) exited with {proc.returncode}; log {proc.log_path}:\n"
        f"{proc.log_tail()}"
    )


@dataclass
class Worker:
    """One Kafka Connect worker process (``ConnectDistributed``)."""

    name: str
    port: int
    config_path: Path
    log_path: Path
    java: str
    artifacts: Artifacts
    log4j_path: Path
    proc: ManagedProcess | None = None
    client: ConnectClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = ConnectClient(self.url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def worker_id(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    def launch(self) -> None:
        """Starts the JVM without waiting (see :meth:`wait_healthy`)."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        cmd = [
            self.java, *JVM_COMMON, *WORKER_JVM,
            f"-Dlog4j2.configurationFile=file:{self.log4j_path}",
            f"-D{WORKER_ID_PROPERTY}={self.worker_id}",
            "-cp", self.artifacts.worker_classpath,
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self.config_path),
        ]  # fmt: skip
        self.proc = ManagedProcess(self.name, cmd, self.log_path)

    def wait_healthy(self, timeout: float = 90.0) -> float:
        """Waits for ``GET /health`` 200; returns seconds since launch. Fails early if it dies."""
        proc = self.proc
        if proc is None:
            raise RuntimeError(f"{self.name} was not launched")

        def healthy() -> bool:
            if not proc.alive:
                raise _died(proc)
            if proc.log_contains(FATAL_STARTUP_ERROR):  # exits, but may take ~30 s to do so
                proc.kill()
                raise _died(proc)
            return self.client.is_healthy(timeout=2.0)  # /health waits while starting

        try:
            wait_until(healthy, timeout=timeout, interval=0.1, what=f"{self.name} /health 200")
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}\nlog {proc.log_path}:\n{proc.log_tail()}") from None
        return time.monotonic() - proc.started

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.proc is not None:
            self.proc.stop(timeout)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def rss_kib(self) -> int | None:
        return self.proc.rss_kib() if self.proc is not None else None


class ConnectCluster:
    """One Connect group: shared ``group.id`` and internal topics, any number of workers."""

    def __init__(
        self,
        artifacts: Artifacts,
        broker: Broker,
        run: RunDir,
        name: str,
        *,
        rebalance_delay_ms: int | None = None,
        worker_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.broker = broker
        self.run = run
        self.name = name
        self.dir = run.sub(name)
        self.rebalance_delay_ms = rebalance_delay_ms
        self.overrides = dict(worker_overrides or {})
        self.workers: list[Worker] = []
        self.java = require_java("java")
        self.log4j_path = run.path / "log4j2.properties"
        if not self.log4j_path.exists():
            self.log4j_path.write_text(LOG4J2)

    def worker_config(self, port: int) -> dict[str, str]:
        config = {
            "bootstrap.servers": self.broker.bootstrap,
            "group.id": self.name,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "config.storage.topic": f"{self.name}-configs",
            "config.storage.replication.factor": "1",
            "offset.storage.topic": f"{self.name}-offsets",
            "offset.storage.replication.factor": "1",
            "offset.storage.partitions": "1",
            "status.storage.topic": f"{self.name}-status",
            "status.storage.replication.factor": "1",
            "status.storage.partitions": "1",
            "offset.flush.interval.ms": "5000",
            "listeners": f"http://127.0.0.1:{port}",
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": str(port),
            "plugin.path": str(self.artifacts.plugin_dir),
            "plugin.discovery": "service_load",
        }
        if self.rebalance_delay_ms is not None:
            config["scheduled.rebalance.max.delay.ms"] = str(self.rebalance_delay_ms)
        config.update(self.overrides)
        return config

    def new_worker(self, port: int | None = None) -> Worker:
        """Creates (does not start) the next worker, on ``port`` or a free one."""
        index = len(self.workers) + 1
        while (self.dir / f"worker{index}.properties").exists():  # after a retried start
            index += 1
        port = port or free_port()
        name = f"{self.name}-worker{index}"
        config_path = self.dir / f"worker{index}.properties"
        lines = [f"{key}={value}\n" for key, value in self.worker_config(port).items()]
        config_path.write_text("".join(lines))
        worker = Worker(
            name=name,
            port=port,
            config_path=config_path,
            log_path=self.dir / f"worker{index}.log",
            java=self.java,
            artifacts=self.artifacts,
            log4j_path=self.log4j_path,
        )
        self.workers.append(worker)
        return worker

    def start_workers(self, count: int, *, timeout: float = 90.0) -> list[Worker]:
        """Starts ``count`` new workers one after the other (the first becomes the group leader)
        and waits until each one's ``/health`` says 200."""
        started = []
        for _ in range(count):
            for attempt in range(3):
                worker = self.new_worker()
                worker.launch()
                try:
                    worker.wait_healthy(timeout)
                    break
                except ProcessDied as exc:
                    # The free port was taken between choosing and binding it: another one.
                    self.workers.remove(worker)
                    worker.client.close()
                    if "Address already in use" not in str(exc) or attempt == 2:
                        raise
            started.append(worker)
        return started

    def stop(self) -> None:
        for worker in reversed(self.workers):
            worker.stop()
            worker.client.close()
