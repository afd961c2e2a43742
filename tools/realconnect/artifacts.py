"""Resolve the official Apache Kafka artifacts with Maven, cache them, build the test plugin.

Where Kafka comes from: Maven Central, through Maven itself. Each pom under ``maven/`` pins one
release (``broker-4.4.0``: ``org.apache.kafka:kafka_2.13``; ``connect-<version>``:
``connect-runtime``, ``connect-json``, ``connect-transforms``, ``connect-file``), and
``mvn dependency:copy-dependencies`` copies its whole runtime dependency tree (the right Jetty,
Jersey, Jackson for that release) into the cache, ``~/.cache/kafka-connect-probe/realconnect``
(``$CONNECT_PROBE_REALCONNECT_CACHE``); Maven keeps its own copy in ``~/.m2``. A fresh machine
resolves everything on first use; later runs do not even start Maven.

Each resolved directory is named after the sha256 of its pom (a changed pom resolves again) and
holds a manifest of every jar's sha256, checked on each use (a corrupted cache is resolved again).
A file lock serialises concurrent setups (parallel pytest runs, the demo next to the tests).
The test connector plugin (``java/plugin``: the failing source; ``../testplugins/sink``: the
controllable sink of the progress checks) is compiled once with ``javac`` against the oldest
Connect API here (3.6.2); the same jar loads in every version.

``python -m tools.realconnect.artifacts`` (``make realconnect-setup``) does all of it.
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "CONNECT_PROBE_REALCONNECT_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "kafka-connect-probe" / "realconnect"

HERE = Path(__file__).resolve().parent
POM_DIR = HERE / "maven"
JAVA_DIR = HERE / "java"
PLUGIN_SOURCE_DIR = JAVA_DIR / "plugin" / "src"
PLUGIN_RESOURCE_DIR = JAVA_DIR / "plugin" / "resources"
PLUGIN_JAR = "probe-test-plugin.jar"
# The controllable sink of the progress checks (its own pom for IDEs; compiled here with javac
# into the same jar, so every worker of the harness has it on its plugin path).
SINK_PLUGIN_DIR = HERE.parent / "testplugins" / "sink" / "src" / "main"
PLUGIN_SOURCE_DIRS = (PLUGIN_SOURCE_DIR, SINK_PLUGIN_DIR / "java")
PLUGIN_RESOURCE_DIRS = (PLUGIN_RESOURCE_DIR, SINK_PLUGIN_DIR / "resources")

BROKER_VERSION = "4.4.0"
# Newest 4.x served whole (the default everywhere; see maven/connect-4.3.1/pom.xml why not
# 4.4.0), newest 3.9.x, newest 3.6.x (no GET /health).
CONNECT_VERSIONS: tuple[str, ...] = ("4.3.1", "3.9.2", "3.6.2")
DEFAULT_CONNECT = CONNECT_VERSIONS[0]
# The plugin is compiled against the oldest Connect API, so that it loads in all of them.
PLUGIN_API_VERSION = min(CONNECT_VERSIONS, key=lambda v: tuple(int(p) for p in v.split(".")))

JAVA_INSTALL_HINT = (
    "install a Java 17 JDK, e.g. `apt-get install openjdk-17-jdk-headless` "
    "(javac builds the test connector plugin once)"
)
MAVEN_INSTALL_HINT = "install Maven, e.g. `apt-get install maven`"

Log = Callable[[str], None]


class SetupError(RuntimeError):
    """The real-Kafka artifacts cannot be made available; the message says what to do."""


@dataclass(frozen=True)
class ConnectDist:
    """One Connect release: the worker's classpath and its ``plugin.path``."""

    version: str
    lib_dir: Path
    plugin_dir: Path

    @property
    def classpath(self) -> str:
        return os.pathsep.join(str(jar) for jar in sorted(self.lib_dir.glob("*.jar")))


@dataclass(frozen=True)
class Artifacts:
    """Everything needed to start the broker and workers of any resolved Connect version."""

    cache: Path
    broker_version: str
    broker_lib: Path
    connect: dict[str, ConnectDist]

    @property
    def broker_classpath(self) -> str:
        return os.pathsep.join(str(jar) for jar in sorted(self.broker_lib.glob("*.jar")))

    def dist(self, version: str | None = None) -> ConnectDist:
        version = version or DEFAULT_CONNECT
        try:
            return self.connect[version]
        except KeyError:
            raise SetupError(f"Connect {version} was not resolved") from None


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


# ------------------------------------------------------------------------------- tools present


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


def _which(tool: str, home_env: str) -> str | None:
    found = shutil.which(tool)
    if found is None:
        home = os.environ.get(home_env)
        candidate = Path(home, "bin", tool) if home else None
        if candidate is not None and candidate.exists():
            found = str(candidate)
    return found


def require_java(tool: str = "java") -> str:
    """Path of ``java`` (or ``javac``), version 17 or newer; a one-line error when missing."""
    found = _which(tool, "JAVA_HOME")
    if found is None:
        raise SetupError(
            f"`{tool}` not found (PATH, $JAVA_HOME/bin): real Kafka needs Java 17: "
            + JAVA_INSTALL_HINT
        )
    version = java_version(found)
    if version is None or version < 17:
        raise SetupError(
            f"`{found}` is Java {version or 'of unknown version'}; Kafka 4 needs Java 17 or "
            "newer: " + JAVA_INSTALL_HINT
        )
    return found


def require_maven() -> str:
    """Path of ``mvn``; a one-line error saying what to install when missing."""
    found = _which("mvn", "MAVEN_HOME")
    if found is None:
        raise SetupError(
            "`mvn` not found: the Kafka jars are resolved from Maven Central with Maven: "
            + MAVEN_INSTALL_HINT
        )
    return found


# ----------------------------------------------------------------------------------- resolving


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
        list(cmd), cwd=cwd, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise SetupError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{output}")
    return done.stdout + done.stderr


MANIFEST = "jars.sha256"


def _jars(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*.jar") if p.is_file())


def write_manifest(tree: Path) -> None:
    lines = [f"{sha256_file(path)}  {path.relative_to(tree)}\n" for path in _jars(tree)]
    (tree / MANIFEST).write_text("".join(lines))


def verify_manifest(tree: Path) -> str | None:
    """None when every jar recorded is present with its sha256 (and no other), else the problem."""
    manifest = tree / MANIFEST
    if not manifest.exists():
        return "not resolved yet"
    recorded: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        recorded[name] = digest
    present = {str(path.relative_to(tree)) for path in _jars(tree)}
    if present != set(recorded):
        return f"the jars differ from {MANIFEST}"
    for name, digest in recorded.items():
        if sha256_file(tree / name) != digest:
            return f"{name} does not match its recorded sha256 (corrupted cache)"
    return None


def _pom_key(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:12]


def resolve(name: str, root: Path, log: Log) -> Path:
    """``maven/<name>/pom.xml`` resolved into ``root/<name>-<pom hash>/lib`` (Connect: the
    ``connect-file`` jar moved to ``plugins/``). Reused while its manifest verifies."""
    pom = POM_DIR / name / "pom.xml"
    tree = root / f"{name}-{_pom_key(pom)}"
    problem = verify_manifest(tree) if tree.exists() else "not resolved yet"
    if problem is None:
        return tree
    if problem != "not resolved yet":
        log(f"realconnect: {tree}: {problem}; resolving again")
    mvn = require_maven()
    log(f"realconnect: resolving {name} from Maven Central (mvn dependency:copy-dependencies)")
    started = time.monotonic()
    staged = Path(tempfile.mkdtemp(prefix="tmp-resolve-", dir=root))
    try:
        _run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
             "-DincludeScope=runtime", f"-DoutputDirectory={staged / 'lib'}"],
            what=f"mvn ({name})",
        )  # fmt: skip
        plugin_jars = list((staged / "lib").glob("connect-file-*.jar"))
        if plugin_jars:
            (staged / "plugins").mkdir()
            for jar in plugin_jars:
                jar.rename(staged / "plugins" / jar.name)
        write_manifest(staged)
        shutil.rmtree(tree, ignore_errors=True)
        staged.rename(tree)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    log(f"realconnect: {name} resolved in {time.monotonic() - started:.0f}s")
    for old in root.glob(f"{name}-*"):  # the same release under an older pom
        if old != tree and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return tree


# ------------------------------------------------------------------------------------- plugin


def build_key(javac: str, api_tree: Path) -> str:
    """Hash of the plugin's sources, the javac version and the API jars compiled against."""
    digest = hashlib.sha256()
    for tree in (JAVA_DIR / "plugin", SINK_PLUGIN_DIR):
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(tree.parent)).encode() + b"\0" + path.read_bytes())
    version = subprocess.run([javac, "-version"], capture_output=True, text=True, check=False)
    digest.update((version.stdout + version.stderr).encode())
    digest.update((api_tree / MANIFEST).read_bytes())
    return digest.hexdigest()[:16]


def _write_jar(jar: Path, trees: Sequence[Path]) -> None:
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
        for tree in trees:
            for path in sorted(tree.rglob("*")):
                relative = str(path.relative_to(tree))
                if path.is_file() and relative != "META-INF/MANIFEST.MF":
                    archive.write(path, relative)


def build_plugin(root: Path, api_tree: Path, log: Log) -> Path:
    """The test plugin jar, compiled against ``api_tree``'s jars (reused while the key matches)."""
    javac = require_java("javac")
    build = root / f"plugin-{build_key(javac, api_tree)}"
    jar = build / PLUGIN_JAR
    if jar.is_file():
        return jar
    log(f"realconnect: compiling the test connector plugin into {build}")
    staged = Path(tempfile.mkdtemp(prefix="tmp-build-", dir=root))
    try:
        classpath = os.pathsep.join(
            str(p) for p in _jars(api_tree / "lib") if p.name.startswith(("connect-api-", "kafka-"))
        )
        sources = sorted(str(p) for d in PLUGIN_SOURCE_DIRS for p in d.rglob("*.java"))
        _run(
            [javac, "--release", "17", "-nowarn", "-cp", classpath,
             "-d", str(staged / "classes"), *sources],
            what="javac (test plugin)",
        )  # fmt: skip
        _write_jar(staged / PLUGIN_JAR, [staged / "classes", *PLUGIN_RESOURCE_DIRS])
        shutil.rmtree(staged / "classes")
        shutil.rmtree(build, ignore_errors=True)
        staged.rename(build)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    for old in root.glob("plugin-*"):
        if old != build and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return jar


def _plugin_path(root: Path, version: str, tree: Path, plugin_jar: Path) -> Path:
    """``plugins-<version>-<key>/``: that release's connect-file jar plus the test plugin."""
    key = hashlib.sha256(
        (tree / MANIFEST).read_bytes() + plugin_jar.parent.name.encode()
    ).hexdigest()[:12]
    target = root / f"plugins-{version}-{key}"
    if not (target / "ok").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for jar in _jars(tree / "plugins"):
            shutil.copyfile(jar, target / jar.name)
        shutil.copyfile(plugin_jar, target / PLUGIN_JAR)
        (target / "ok").write_text("")
    for old in root.glob(f"plugins-{version}-*"):
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return target


def ensure_artifacts(versions: Iterable[str] = CONNECT_VERSIONS, log: Log = _stderr) -> Artifacts:
    """The broker and the given Connect releases, resolved and verified (Maven only if needed)."""
    require_java("java")
    wanted = list(dict.fromkeys(versions))
    unknown = [v for v in wanted if v not in CONNECT_VERSIONS]
    if unknown:
        raise SetupError(f"no pom for Connect {unknown}: known {list(CONNECT_VERSIONS)}")
    root = cache_dir()
    with _locked(root):
        for leftover in root.glob("tmp-*"):  # from an interrupted setup
            shutil.rmtree(leftover, ignore_errors=True)
        broker = resolve(f"broker-{BROKER_VERSION}", root, log)
        trees = {v: resolve(f"connect-{v}", root, log) for v in wanted}
        api_tree = trees.get(PLUGIN_API_VERSION) or resolve(
            f"connect-{PLUGIN_API_VERSION}", root, log
        )
        plugin_jar = build_plugin(root, api_tree, log)
        connect = {
            v: ConnectDist(v, tree / "lib", _plugin_path(root, v, tree, plugin_jar))
            for v, tree in trees.items()
        }
    return Artifacts(root, BROKER_VERSION, broker / "lib", connect)


def main() -> int:
    started = time.monotonic()
    try:
        artifacts = ensure_artifacts()
    except SetupError as exc:
        _stderr(f"realconnect setup failed: {exc}")
        return 1
    lines = [
        f"realconnect: ready in {time.monotonic() - started:.1f}s",
        f"  cache:  {artifacts.cache}",
        f"  broker: Apache Kafka {artifacts.broker_version} ({artifacts.broker_lib})",
    ]
    lines += [
        f"  connect {d.version}: {d.lib_dir} (plugin.path {d.plugin_dir})"
        for d in artifacts.connect.values()
    ]
    _stderr("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
