"""Start a real Apache Kafka broker and real Kafka Connect workers (distributed mode) on loopback.

The :class:`Broker` is the official ``kafka.Kafka`` in KRaft mode (one node, broker and
controller), its storage formatted by Kafka's own tool in a fresh directory of the run. Each
:class:`ConnectCluster` is one Connect group (own ``group.id`` and internal topics) of one Connect
release on that broker; its :class:`Worker` processes listen on free ``127.0.0.1`` ports and
advertise ``127.0.0.1:PORT``, so ``worker_id == "127.0.0.1:PORT"``. Logs, configs and data are
written to a per-run directory (:class:`RunDir`).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tools.realconnect.artifacts import Artifacts, ConnectDist, require_java
from tools.realconnect.procs import ManagedProcess
from tools.realconnect.rest import ConnectClient
from tools.realconnect.wait import GiveUp, WaitTimeout, wait_until

LOGS_ENV = "CONNECT_PROBE_REALCONNECT_LOGS"
DEFAULT_LOGS = Path(__file__).resolve().parent / "logs"  # git-ignored
KEEP_RUNS = 10

# Small, quick-starting JVMs (2-core CI machines): serial GC, C1 only, small heaps.
JVM_COMMON = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
BROKER_JVM = ("-Xms64m", "-Xmx384m")
WORKER_JVM = ("-Xms64m", "-Xmx512m")
# Logged by ConnectDistributed when startup fails (e.g. its port is taken).
FATAL_STARTUP_ERROR = "Stopping due to error (org.apache.kafka.connect.cli.AbstractConnectCli)"
# Logged by the DistributedHerder on each join of the Connect group (3.6 to 4.x).
JOINED = "Joined group at generation"
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
logger.broker.name = kafka
logger.broker.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
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


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3])


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


BROKER_PROPERTIES = """\
# Single-node KRaft: this process is broker and controller (Apache Kafka {version}).
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
log.dirs={data_dir}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# One partition each instead of 50: a single node, and far less start-up work on 2 cores.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms={initial_rebalance_delay_ms}
"""
# Logged by kafka.server.KafkaRaftServer once the broker serves requests.
BROKER_STARTED = "Kafka Server started"

# A SASL_SSL listener with one SCRAM-SHA-512 user, for clients that connect like production ones.
SASL_SSL_PROPERTIES = """\
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
"""
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class ScramListener:
    """The broker's SASL_SSL listener: its port, its SCRAM-SHA-512 user, the files a client
    needs (``ca_file``: the broker's self-signed certificate, for 127.0.0.1 only;
    ``password_file``: mode 0600). The password is kept in no argument list (``ps``)."""

    port: int
    username: str
    password: str
    password_file: Path
    ca_file: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throw-away key and self-signed certificate for ``127.0.0.1`` (openssl): the broker's
    PEM keystore (key + certificate) and the certificate alone, the clients' CA file."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("`openssl` not found: install it, e.g. `apt-get install openssl`")
    key, cert = directory / "broker.key", directory / "broker-ca.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    keystore = directory / "broker-keystore.pem"
    keystore.write_bytes(key.read_bytes() + cert.read_bytes())
    keystore.chmod(0o600)
    key.unlink()
    return keystore, cert


def cluster_id() -> str:
    """A random KRaft cluster id, as ``kafka-storage.sh random-uuid`` makes: 16 random bytes in
    URL-safe base64 without padding (not starting with ``-``, which a CLI would take as a flag)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass
class Broker:
    """A real Apache Kafka broker+controller (``kafka.Kafka``), one node, KRaft.

    Its data directory is formatted once by Kafka's own storage tool; :meth:`start` after
    :meth:`stop` or :meth:`kill` brings the same node back on the same ports and data.
    """

    artifacts: Artifacts
    run: RunDir
    name: str
    port: int
    controller_port: int
    config_path: Path
    log_path: Path
    proc: ManagedProcess | None = None
    starts: int = 0
    start_seconds: float = 0.0
    scram: ScramListener | None = None
    # (bound port, advertised port) of the PROXIED listener, see start_broker(proxied_port=…).
    proxied: tuple[int, int] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    def start(self, timeout: float = 90.0) -> float:
        """Starts the JVM and waits until it serves; returns the seconds that took."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        java = require_java("java")
        cmd = [
            java, *JVM_COMMON, *BROKER_JVM,
            f"-Dlog4j2.configurationFile=file:{_log4j_file(self.run)}",
            f"-Dkafka.logs.dir={self.run.path}",
            "-cp", self.artifacts.broker_classpath, "kafka.Kafka", str(self.config_path),
        ]  # fmt: skip
        self.starts += 1
        proc = ManagedProcess(self.name, cmd, self.log_path)
        self.proc = proc
        offset = _size(self.log_path)

        def serving() -> bool:
            if not proc.alive:
                raise _died(proc)
            return _log_has(self.log_path, BROKER_STARTED, offset) and port_open(self.port)

        try:
            wait_until(serving, timeout=timeout, interval=0.05, what=f"{self.name} to serve")
        except BaseException:
            proc.stop()
            raise
        self.start_seconds = time.monotonic() - proc.started
        return self.start_seconds

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM; SIGKILL after ``timeout``); resumes a SIGSTOPped one first."""
        if self.proc is not None:
            self.proc.stop(timeout)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets open but answers nothing (a hung broker)."""
        assert self.proc is not None
        self.proc.pause()

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.resume()

    def rss_kib(self) -> int | None:
        return self.proc.rss_kib() if self.proc is not None else None


def start_broker(
    artifacts: Artifacts,
    run: RunDir,
    *,
    name: str = "broker",
    initial_rebalance_delay_ms: int = 0,
    timeout: float = 90.0,
    sasl_ssl: bool = False,
    proxied_port: int | None = None,
) -> Broker:
    """Formats a fresh data directory with Kafka's storage tool and starts the broker on free
    ports. ``initial_rebalance_delay_ms``: the broker's ``group.initial.rebalance.delay.ms``
    (3 s in Kafka's defaults; 0 here unless asked, so that each new Connect group joins at once).
    ``sasl_ssl``: also a SASL_SSL listener (self-signed certificate for 127.0.0.1) with a
    SCRAM-SHA-512 user created by the storage tool's ``--add-scram`` (``Broker.scram``).
    ``proxied_port``: also a PLAINTEXT listener that advertises ``127.0.0.1:proxied_port``, so a
    client bootstrapped through a proxy on that port (tools.realconnect.tcpproxy) sends all its
    traffic through it (``Broker.proxied``: the listener's own port, the advertised one).
    """
    java = require_java("java")
    for attempt in range(3):
        port, controller_port = free_port(), free_port()
        data_dir = run.sub(f"{name}-data")
        shutil.rmtree(data_dir)
        config_path = run.path / f"{name}.properties"
        config = BROKER_PROPERTIES.format(
            version=artifacts.broker_version,
            port=port,
            controller_port=controller_port,
            data_dir=data_dir,
            initial_rebalance_delay_ms=initial_rebalance_delay_ms,
        )
        scram: ScramListener | None = None
        if sasl_ssl:
            secrets_dir = run.sub(f"{name}-secrets")
            secrets_dir.chmod(0o700)
            keystore, ca_file = self_signed_cert(secrets_dir)
            password = secrets.token_urlsafe(18)
            password_file = secrets_dir / "scram-password"
            password_file.write_text(password)
            password_file.chmod(0o600)
            scram = ScramListener(free_port(), "probe", password, password_file, ca_file)
            config = _add_listener(config, "SASL_SSL", scram.port, scram.port, "SASL_SSL")
            config += SASL_SSL_PROPERTIES.format(keystore=keystore)
        proxied: tuple[int, int] | None = None
        if proxied_port is not None:
            proxied = (free_port(), proxied_port)
            config = _add_listener(config, "PROXIED", proxied[0], proxied_port, "PLAINTEXT")
        config_path.write_text(config)
        log_path = run.path / f"{name}.log"
        _log4j_file(run)
        format_storage(java, artifacts, config_path, log_path, scram)
        broker = Broker(artifacts, run, name, port, controller_port, config_path, log_path)
        broker.scram = scram
        broker.proxied = proxied
        try:
            broker.start(timeout)
            return broker
        except ProcessDied as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _add_listener(config: str, name: str, port: int, advertised: int, protocol: str) -> str:
    """``config`` with one more listener ``name`` bound to ``port``, advertising ``advertised``."""
    lines = []
    for line in config.splitlines():
        key = line.partition("=")[0]
        if key == "listeners":
            line += f",{name}://127.0.0.1:{port}"
        elif key == "advertised.listeners":
            line += f",{name}://127.0.0.1:{advertised}"
        elif key == "listener.security.protocol.map":
            line += f",{name}:{protocol}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def format_storage(
    java: str,
    artifacts: Artifacts,
    config_path: Path,
    log_path: Path,
    scram: ScramListener | None = None,
) -> None:
    """``kafka-storage.sh format --standalone -t <id> -c <config>``: Kafka's own tool; with
    ``scram``, ``--add-scram`` creates its user. The tool's arguments then go in an ``@file``
    (argparse4j's, one argument a line; mode 0600, removed after), so that the password is in no
    process listing."""
    args = ["format", "--standalone", "-t", cluster_id(), "-c", str(config_path)]
    shown = list(args)
    argfile: Path | None = None
    if scram is not None:
        scram_arg = f"{SCRAM_MECHANISM}=[name={scram.username},password={scram.password}]"
        argfile = scram.password_file.parent / "storage-format.args"
        argfile.touch(mode=0o600)
        argfile.write_text("\n".join([*args, "--add-scram", scram_arg]) + "\n")
        args = [f"@{argfile}"]
        shown += ["--add-scram", f"{SCRAM_MECHANISM}=[name={scram.username},password=***]"]
    cmd = [
        java, *JVM_COMMON, "-Xmx128m",
        "-Dlog4j2.configurationFile=file:" + str(config_path.parent / "log4j2.properties"),
        "-cp", artifacts.broker_classpath, "kafka.tools.StorageTool", *args,
    ]  # fmt: skip
    try:
        with log_path.open("ab") as log:
            log.write(
                f"# {time.strftime('%H:%M:%S')} {' '.join(cmd[: -len(args)] + shown)}\n".encode()
            )
            log.flush()
            done = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, timeout=120, check=False
            )
    finally:
        if argfile is not None:
            argfile.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise ProcessDied(f"kafka-storage format exited with {done.returncode}:\n{tail}")


def _log4j_file(run: RunDir) -> Path:
    path = run.path / "log4j2.properties"
    if not path.exists():
        path.write_text(LOG4J2)
    return path


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_has(path: Path, text: str, offset: int) -> bool:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return text.encode() in log.read()
    except OSError:
        return False


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
    dist: ConnectDist
    log4j_path: Path
    proc: ManagedProcess | None = None
    client: ConnectClient = field(init=False)
    _log_offset: int = 0

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

    @property
    def version(self) -> str:
        return self.dist.version

    def launch(self) -> None:
        """Starts the JVM without waiting (see :meth:`wait_healthy`)."""
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        cmd = [
            self.java, *JVM_COMMON, *WORKER_JVM,
            f"-Dlog4j2.configurationFile=file:{self.log4j_path}",
            f"-D{WORKER_ID_PROPERTY}={self.worker_id}",
            "-cp", self.dist.classpath,
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self.config_path),
        ]  # fmt: skip
        self._log_offset = _size(self.log_path)
        self.proc = ManagedProcess(self.name, cmd, self.log_path)

    @property
    def has_health(self) -> bool:
        """``GET /health`` exists from Connect 3.9 on (KIP-1017)."""
        return version_tuple(self.version) >= (3, 9)

    def joined(self) -> bool:
        """Whether this run of the worker has logged its first group join (every version)."""
        return _log_has(self.log_path, JOINED, self._log_offset)

    def wait_healthy(self, timeout: float = 90.0) -> float:
        """Waits for ``GET /health`` 200 (before 3.9: ``GET /connectors`` 200 after the first
        group join in the log); returns seconds since launch. Fails early if it dies."""
        proc = self.proc
        if proc is None:
            raise RuntimeError(f"{self.name} was not launched")

        def healthy() -> bool:
            if not proc.alive:
                raise _died(proc)
            if proc.log_contains(FATAL_STARTUP_ERROR):  # exits, but may take ~30 s to do so
                proc.kill()
                raise _died(proc)
            if self.has_health:
                return self.client.is_healthy(timeout=2.0)  # /health waits while starting
            return self.joined() and self.client.answers(timeout=2.0)

        try:
            wait_until(healthy, timeout=timeout, interval=0.1, what=f"{self.name} healthy")
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
    """One Connect group of one release: ``group.id``, internal topics, any number of workers."""

    def __init__(
        self,
        artifacts: Artifacts,
        broker: Broker,
        run: RunDir,
        name: str,
        *,
        version: str | None = None,
        rebalance_delay_ms: int | None = None,
        worker_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.dist = artifacts.dist(version)
        self.broker = broker
        self.run = run
        self.name = name
        self.dir = run.sub(name)
        self.rebalance_delay_ms = rebalance_delay_ms
        self.overrides = dict(worker_overrides or {})
        self.workers: list[Worker] = []
        self.java = require_java("java")
        self.log4j_path = _log4j_file(run)

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
            "plugin.path": str(self.dist.plugin_dir),
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
            dist=self.dist,
            log4j_path=self.log4j_path,
        )
        self.workers.append(worker)
        return worker

    def start_workers(self, count: int, *, timeout: float = 90.0) -> list[Worker]:
        """Starts ``count`` new workers one after the other (the first becomes the group leader)
        and waits until each one is healthy (see :meth:`Worker.wait_healthy`)."""
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

    def stop(self, timeout: float = 30.0) -> None:
        for worker in reversed(self.workers):
            worker.stop(timeout)
            worker.client.close()
