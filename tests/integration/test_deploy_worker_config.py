"""``deploy/`` runs the Connect release the tests prove, with keys that release knows.

The names come from the release itself: ``DistributedConfig``'s ``main`` prints the worker's whole
``ConfigDef`` (the HTML of Kafka's documentation), run here from the jars Maven resolved.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tools.realconnect.artifacts import DEFAULT_CONNECT, require_java
from tools.realconnect.session import RealConnect

pytestmark = pytest.mark.realkafka

ROOT = Path(__file__).resolve().parents[2] / "deploy"
DEPLOY = ROOT / "base"
PROPERTIES = DEPLOY / "connect-distributed.properties"
STATEFULSET = DEPLOY / "statefulset.yaml"
# Every file that ends up in a worker's properties: the base's, an overlay's replacement, and
# what components append (mounted under /etc/kafka-connect/conf.d/).
WORKER_FILES = (
    PROPERTIES,
    ROOT / "overlays" / "example" / "connect-distributed.properties",
    ROOT / "components" / "connect-basic-auth" / "basic-auth.properties",
)
# Keys the container's start-up script appends after the file (see its header).
APPENDED = ("rest.advertised.host.name", "rest.advertised.port")
# Prefixes passed through to converters and the worker's clients, not in DistributedConfig.
PASS_THROUGH = (
    "key.converter.",
    "value.converter.",
    "header.converter.",
    "producer.",
    "consumer.",
    "admin.",
    "config.providers.",
    "listeners.https.",
    "admin.listeners.https.",
)
SETTING = re.compile(r"^\s*#?\s*([a-z][a-z0-9_.-]*[a-z0-9])\s*=")


def worker_config_names(realconnect: RealConnect) -> set[str]:
    dist = realconnect.artifacts.dist(DEFAULT_CONNECT)
    done = subprocess.run(
        [require_java(), "-XX:TieredStopAtLevel=1", "-cp", dist.classpath,
         "org.apache.kafka.connect.runtime.distributed.DistributedConfig"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return set(re.findall(r'id="connectconfigs_([^"]+)"', done.stdout))


def deployed_keys(path: Path) -> list[str]:
    """Every ``key=value`` of the file, also the commented-out ones a user is told to enable."""
    keys = [m.group(1) for line in path.read_text().splitlines() if (m := SETTING.match(line))]
    return [*keys, *APPENDED]


def test_statefulset_runs_the_tested_connect_release() -> None:
    images = re.findall(r"image:\s*apache/kafka:(\S+)", STATEFULSET.read_text())
    assert images == [DEFAULT_CONNECT], images


def test_worker_properties_are_known_to_that_release(realconnect: RealConnect) -> None:
    names = worker_config_names(realconnect)
    assert len(names) > 100, f"DistributedConfig listed only {sorted(names)}"
    assert {"bootstrap.servers", "group.id", "plugin.path", "listeners"} <= names
    assert "bootstrap.servers" in deployed_keys(PROPERTIES)
    for path in WORKER_FILES:
        keys = deployed_keys(path)
        unknown = [k for k in keys if k not in names and not k.startswith(PASS_THROUGH)]
        assert not unknown, f"{path}: not worker configs of Connect {DEFAULT_CONNECT}: {unknown}"
