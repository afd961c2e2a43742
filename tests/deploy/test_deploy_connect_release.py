"""Every render runs the Connect release the real-Kafka tier proves, logging through Log4j 2.

An overlay's ``images:`` entry once pinned an older release than the base, unnoticed: the check is
on the rendered manifests, so overlays and components count. The Log4j 2 file itself is loaded
with that release's jars in tests/integration/test_deploy_log4j2.py; here: every render hands the
worker exactly that file, through an option Kafka 4's start scripts accept as Log4j 2.
"""

import re
import shlex
from pathlib import Path

import pytest

from tools.deploycheck.manifests import (
    DEPLOY,
    Manifest,
    PodTemplate,
    find,
    image_name,
    kustomization_id,
    kustomizations,
    pod_templates,
    render,
)
from tools.realconnect.artifacts import DEFAULT_CONNECT

pytestmark = [
    pytest.mark.process,  # kubectl kustomize
    pytest.mark.parametrize("kdir", kustomizations(), ids=kustomization_id),
]

CONNECT_IMAGE = f"apache/kafka:{DEFAULT_CONNECT}"
LOG4J2_FILE = DEPLOY / "base" / "connect-log4j2.properties"
OPTION = re.compile(r"^-Dlog4j2\.configurationFile=file:(?P<path>/\S+)$")
# Kafka 4's bin/connect-distributed.sh prints a deprecation notice when KAFKA_LOG4J_OPTS matches
# the first, and kafka-run-class.sh turns on Log4j 1 compatibility for the second.
LOG4J1_DETECTION = (
    re.compile(r"log4j\.[^\s]+$"),
    re.compile(r"log4j\.[^\s]+(\.properties|\.xml)$"),
)


def connect_containers(pod: PodTemplate) -> list[Manifest]:
    return [c for c in pod.all_containers() if image_name(c["image"]) == "kafka"]


def mounted_file(
    docs: tuple[Manifest, ...], pod: PodTemplate, container: Manifest, path: str
) -> str:
    """The content of ``path`` in the container, when a ConfigMap volume provides it."""
    volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        volume = volumes.get(mount["name"], {})
        if path.startswith(prefix) and "configMap" in volume:
            configmap = find(docs, "ConfigMap", volume["configMap"]["name"], pod.namespace)
            assert configmap is not None, f"{pod.owner}: ConfigMap of {mount['name']} missing"
            key = path.removeprefix(prefix)
            data = configmap.get("data", {})
            assert key in data, f"{pod.owner}: {path}: no key {key} in {sorted(data)}"
            return str(data[key])
    raise AssertionError(f"{pod.owner}: {path} is on no ConfigMap volume")


def test_connect_runs_the_tested_release(kdir: Path) -> None:
    containers = [c for pod in pod_templates(render(kdir)) for c in connect_containers(pod)]
    assert containers, f"{kdir}: no apache/kafka container"
    assert [c["image"] for c in containers] == [CONNECT_IMAGE] * len(containers)


def test_connect_logs_through_the_log4j2_file(kdir: Path) -> None:
    docs = render(kdir)
    for pod in pod_templates(docs):
        for container in connect_containers(pod):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            opts = shlex.split(env.get("KAFKA_LOG4J_OPTS") or "")
            assert len(opts) == 1, opts
            match = OPTION.match(opts[0])
            assert match is not None, opts[0]
            assert not any(p.search(opts[0]) for p in LOG4J1_DETECTION), opts[0]
            content = mounted_file(docs, pod, container, match.group("path"))
            assert content == LOG4J2_FILE.read_text(encoding="utf-8"), match.group("path")
