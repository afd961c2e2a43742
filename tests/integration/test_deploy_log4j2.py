"""``deploy/``'s worker logging is a Log4j 2 configuration that Connect 4.3.1's jars really load.

Kafka 4 logs through Log4j 2 only. Handed a Log4j 1 file (``log4j.rootLogger=...``) as
``log4j2.configurationFile``, Log4j 2.25 throws at the first logger (the worker would not start);
a file without Log4j 2 keys loads as an empty configuration (errors only). So the check runs
a small Java program on the worker's own classpath (log4j-core and the SLF4J binding Maven
resolved for 4.3.1) with the statefulset's ``KAFKA_LOG4J_OPTS`` pointed at the repository's file.
It logs through SLF4J, as Connect does, and reports what Log4j loaded. A Log4j 1 file must fail
the same check, so the check can fail.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tools.realconnect.artifacts import DEFAULT_CONNECT, require_java
from tools.realconnect.session import RealConnect

pytestmark = pytest.mark.realkafka

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "base"
STATEFULSET = DEPLOY / "statefulset.yaml"
MOUNT = "/etc/kafka-connect/worker/"  # the ConfigMap of deploy/base, in the Connect container
OPTION = re.compile(r"^-Dlog4j2\.configurationFile=file:(?P<path>\S+)$")

# What the 3.9 deployment used (reload4j): Log4j 2 must not take it for a working configuration.
LOG4J1 = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %X{connector.context}%m (%c:%L)%n
"""

CHECK_CLASS = "Log4j2Check"
CHECK_SOURCE = """\
import java.util.Map;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.Appender;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.ConsoleAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.slf4j.MDC;

public class Log4j2Check {
    public static void main(String[] args) {
        Logger task = LoggerFactory.getLogger("org.apache.kafka.connect.runtime.WorkerTask");
        Logger scan = LoggerFactory.getLogger("org.reflections.Reflections");
        MDC.put("connector.context", "[probe-sink|task-0] ");
        task.debug("debug line");
        task.info("info line");
        scan.warn("reflections warn line");
        scan.error("reflections error line");
        MDC.clear();
        LoggerContext context = (LoggerContext) LogManager.getContext(false);
        Configuration config = context.getConfiguration();
        System.out.println("check.class=" + config.getClass().getName());
        System.out.println("check.source=" + config.getConfigurationSource().getLocation());
        System.out.println("check.root=" + config.getRootLogger().getLevel());
        for (Map.Entry<String, Appender> entry : config.getAppenders().entrySet()) {
            Appender appender = entry.getValue();
            String target = appender instanceof ConsoleAppender console
                ? String.valueOf(console.getTarget()) : "-";
            String kind = appender.getClass().getSimpleName();
            System.out.println("check.appender=" + kind + ":" + target);
        }
    }
}
"""
TIMESTAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]"
INFO_LINE = re.compile(
    rf"^{TIMESTAMP} INFO \[probe-sink\|task-0\] info line "
    r"\(org\.apache\.kafka\.connect\.runtime\.WorkerTask:\d+\)$"
)
REFLECTIONS_ERROR = re.compile(
    rf"^{TIMESTAMP} ERROR \[probe-sink\|task-0\] reflections error line "
    r"\(org\.reflections\.Reflections:\d+\)$"
)


@dataclass(frozen=True)
class Loaded:
    """What the JVM printed: its log lines (stdout), Log4j's own complaints (stderr), facts."""

    returncode: int
    lines: list[str]
    stderr: str
    facts: dict[str, list[str]]

    def problems(self, config: Path) -> list[str]:
        """Why this is not the deployed configuration at work (empty when it is)."""
        found = []
        if self.returncode != 0:
            first = next((line for line in self.stderr.splitlines() if line.strip()), "")
            found.append(f"the JVM exited with {self.returncode}: {first}")
        if self.facts.get("check.class") != [
            "org.apache.logging.log4j.core.config.properties.PropertiesConfiguration"
        ]:
            found.append(
                f"not loaded as a Log4j 2 properties file: {self.facts.get('check.class')}"
            )
        if self.facts.get("check.source") != [str(config)]:
            found.append(f"loaded from {self.facts.get('check.source')}, not {config}")
        if self.facts.get("check.root") != ["INFO"]:
            found.append(f"root level {self.facts.get('check.root')}, not INFO")
        if self.facts.get("check.appender") != ["ConsoleAppender:SYSTEM_OUT"]:
            found.append(f"appenders {self.facts.get('check.appender')}, not one on stdout")
        logged = [line for line in self.lines if not line.startswith("check.")]
        if not any(INFO_LINE.match(line) for line in logged):
            found.append("no INFO line with the connector context and the pattern")
        if not any(REFLECTIONS_ERROR.match(line) for line in logged):
            found.append("no ERROR line of org.reflections")
        unwanted = [line for line in logged if "debug line" in line or "reflections warn" in line]
        if unwanted:
            found.append(f"logged below the configured levels: {unwanted}")
        complaints = [line for line in self.stderr.splitlines() if line.strip()]
        if complaints:
            found.append(f"Log4j complained on stderr: {complaints}")
        return found


def deployed_log4j_opts() -> str:
    """``KAFKA_LOG4J_OPTS`` of the Connect container in deploy/base/statefulset.yaml."""
    statefulset = yaml.safe_load(STATEFULSET.read_text(encoding="utf-8"))
    for container in statefulset["spec"]["template"]["spec"]["containers"]:
        for entry in container.get("env", []):
            if entry["name"] == "KAFKA_LOG4J_OPTS":
                return str(entry["value"])
    raise AssertionError(f"{STATEFULSET}: no KAFKA_LOG4J_OPTS")


def load(realconnect: RealConnect, tmp_path: Path, opts: list[str]) -> Loaded:
    """Runs the check program on the 4.3.1 worker's classpath with these Log4j options."""
    source = tmp_path / f"{CHECK_CLASS}.java"
    source.write_text(CHECK_SOURCE)
    classpath = realconnect.artifacts.dist(DEFAULT_CONNECT).classpath
    done = subprocess.run(
        [require_java(), "-XX:TieredStopAtLevel=1", *opts, "-cp", classpath, str(source)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    facts: dict[str, list[str]] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.startswith("check."):
            facts.setdefault(key, []).append(value)
    return Loaded(done.returncode, lines, done.stderr, facts)


def test_statefulset_points_log4j2_at_the_configmap_file() -> None:
    opts = shlex.split(deployed_log4j_opts())
    assert len(opts) == 1, opts
    match = OPTION.match(opts[0])
    assert match is not None, opts[0]
    path = match.group("path")
    assert path.startswith(MOUNT), f"{path}: not in the worker ConfigMap's mount {MOUNT}"
    assert (DEPLOY / path.removeprefix(MOUNT)).is_file(), f"{path}: no such file in {DEPLOY}"


def test_deployed_file_is_log4j2_configuration_of_that_release(
    realconnect: RealConnect, tmp_path: Path
) -> None:
    match = OPTION.match(deployed_log4j_opts())
    assert match is not None
    config = DEPLOY / match.group("path").removeprefix(MOUNT)
    loaded = load(realconnect, tmp_path, [f"-Dlog4j2.configurationFile=file:{config}"])
    assert loaded.problems(config) == [], "\n".join([*loaded.lines, loaded.stderr])


def test_a_log4j1_file_fails_the_same_check(realconnect: RealConnect, tmp_path: Path) -> None:
    config = tmp_path / "connect-log4j2.properties"
    config.write_text(LOG4J1)
    loaded = load(realconnect, tmp_path, [f"-Dlog4j2.configurationFile=file:{config}"])
    problems = loaded.problems(config)
    assert any("ConfigurationException" in p for p in problems), problems
    assert any("no INFO line" in p for p in problems), problems
