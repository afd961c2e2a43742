"""Render deploy/ with ``kubectl kustomize`` and read the rendered objects (helpers for tests).

Semantics the checks rely on (which the schema validation cannot see):
- a probe's named port resolves only against the ports of the container that owns the probe;
- an ``envFrom`` ConfigMap contributes its keys (with the optional prefix) to the container env,
  and an explicit ``env`` entry wins over it.
"""

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from starlette.routing import Match

from app.settings import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SIDECAR_IMAGE = "kafka-connect-probe"
# Kustomizations with this in their path run the sidecar as an ordinary container (Kubernetes
# < 1.29); all others as a native sidecar (an init container with restartPolicy: Always).
CLASSIC = "classic-sidecar"
PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")
# Stand-ins for values only the cluster knows, used to build Settings from a manifest.
FIELD_REF_VALUES = {"status.podIP": "10.0.0.7", "status.hostIP": "10.0.0.1"}
SECRET_PLACEHOLDER = "from-a-secret"

Manifest = dict[str, Any]


def kustomizations() -> list[Path]:
    """Every directory under deploy/ that kustomize can build (components are built via these)."""
    found = []
    for path in sorted(DEPLOY.rglob("kustomization.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        if document.get("kind", "Kustomization") == "Kustomization":
            found.append(path.parent)
    return found


def kustomization_id(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


def kubectl() -> str:
    """kubectl (its built-in kustomize); skipped locally if absent, a failure in CI."""
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        message = "kubectl not found (set KUBECTL): needed to render deploy/ with kustomize"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@cache
def _render(directory: Path, binary: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [binary, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(directory: Path) -> tuple[Manifest, ...]:
    return _render(directory, kubectl())


@dataclass(frozen=True)
class PodTemplate:
    owner: str
    namespace: str | None
    labels: dict[str, str]
    spec: Manifest

    def containers(self) -> list[Manifest]:
        return list(self.spec.get("containers", []))

    def all_containers(self) -> list[Manifest]:
        return self.containers() + list(self.spec.get("initContainers", []))


def pod_templates(docs: tuple[Manifest, ...]) -> list[PodTemplate]:
    templates = []
    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        template: Manifest | None
        if kind == "Pod":
            template = {"metadata": doc["metadata"], "spec": spec}
        elif kind == "CronJob":
            template = spec["jobTemplate"]["spec"]["template"]
        else:
            template = spec.get("template")
        if template is None or "spec" not in template:
            continue
        meta = template.get("metadata", {})
        templates.append(
            PodTemplate(
                owner=f"{kind}/{doc['metadata']['name']}",
                namespace=doc["metadata"].get("namespace"),
                labels=dict(meta.get("labels", {})),
                spec=template["spec"],
            )
        )
    return templates


def image_name(image: str) -> str:
    """``reg.example:5000/team/kafka-connect-probe:0.1.0@sha256:..`` -> ``kafka-connect-probe``."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_sidecar(container: Manifest) -> bool:
    return image_name(container["image"]) == SIDECAR_IMAGE


def find(
    docs: tuple[Manifest, ...], kind: str, name: str, namespace: str | None
) -> Manifest | None:
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return doc
    return None


def container_env(
    docs: tuple[Manifest, ...], pod: PodTemplate, container: Manifest, secret_file: Path
) -> dict[str, str]:
    """The container's environment as the kubelet would build it, with cluster-only values
    (field refs, Secret values) replaced by stand-ins and file-valued settings by ``secret_file``.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            configmap = find(docs, "ConfigMap", source["configMapRef"]["name"], pod.namespace)
            assert configmap is not None, f"{pod.owner}: envFrom ConfigMap missing"
            env.update({prefix + k: str(v) for k, v in configmap.get("data", {}).items()})
        elif "secretRef" in source:
            secret = find(docs, "Secret", source["secretRef"]["name"], pod.namespace)
            assert secret is not None, f"{pod.owner}: envFrom Secret missing"
            keys = list(secret.get("data", {})) + list(secret.get("stringData", {}))
            env.update({prefix + k: SECRET_PLACEHOLDER for k in keys})
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = str(entry["value"])
        elif "fieldRef" in entry.get("valueFrom", {}):
            env[name] = FIELD_REF_VALUES[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[name] = SECRET_PLACEHOLDER
    for name in list(env):
        if name.endswith("_FILE"):
            env[name] = str(secret_file)
    return env


def probes(container: Manifest) -> Iterator[tuple[str, Manifest]]:
    for kind in PROBE_KINDS:
        if kind in container:
            yield kind, container[kind]


def resolve_port(container: Manifest, port: int | str) -> int | None:
    """A probe's port: a number as is, a name from the same container's ports (else None).

    A string is always a name, even "18083" (the API server rejects such a name).
    """
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


def sidecar_pods(docs: tuple[Manifest, ...]) -> list[tuple[PodTemplate, Manifest]]:
    found = []
    for pod in pod_templates(docs):
        sidecars = [c for c in pod.all_containers() if is_sidecar(c)]
        assert len(sidecars) <= 1, f"{pod.owner}: more than one kafka-connect-probe container"
        if sidecars:
            found.append((pod, sidecars[0]))
    return found


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Exactly ``values`` as far as Settings can tell (none of the caller's CONNECT_PROBE_*)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX) or name == "POD_IP":
                patch.delenv(name)
        for name, value in values.items():
            patch.setenv(name, value)
        yield


def serves_get(app: FastAPI, path: str) -> bool:
    """Whether the app's router would dispatch ``GET path`` to a route (as the server does)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "path_params": {}}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)
