"""The rendered manifests against the app itself: probe paths are routes, probe ports are the
sidecar's port, CONNECT_PROBE_* names are settings and their values parse, selectors select,
references resolve, containers are locked down. Schema validation (kubernetes-validate) is in
``make deploy-check``; these are the semantic checks it cannot do.
"""

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import AliasChoices

from app.main import create_app
from app.settings import ENV_PREFIX, Settings
from tools.deploycheck.manifests import (
    CLASSIC,
    Manifest,
    PodTemplate,
    container_env,
    environment,
    find,
    kustomization_id,
    kustomizations,
    pod_templates,
    probes,
    render,
    resolve_port,
    serves_get,
    sidecar_pods,
)

KUSTOMIZATIONS = kustomizations()
pytestmark = [
    pytest.mark.process,  # kubectl kustomize
    pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=kustomization_id),
]


def setting_env_names() -> frozenset[str]:
    """Every environment name Settings reads (prefix + field, or the field's aliases)."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{ENV_PREFIX}{field_name}".upper())
    return frozenset(names)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    with environment({}):
        return create_app(Settings())


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "password"
    path.write_text("from-a-secret\n", encoding="utf-8")
    return path


def sidecar_settings(
    docs: tuple[Manifest, ...], pod: PodTemplate, sidecar: Manifest, secret_file: Path
) -> Settings:
    env = container_env(docs, pod, sidecar, secret_file)
    with environment(env):
        return Settings()


def test_renders_a_workload_with_the_sidecar(kdir: Path) -> None:
    assert sidecar_pods(render(kdir)), f"{kdir}: no pod template runs {'kafka-connect-probe'}"


def test_sidecar_is_native_unless_classic(kdir: Path) -> None:
    """Native (an init container with restartPolicy Always, started before Connect once its
    startupProbe passes) by default; an ordinary container in the classic-sidecar variant."""
    for pod, sidecar in sidecar_pods(render(kdir)):
        native = sidecar in pod.spec.get("initContainers", [])
        if CLASSIC in str(kdir):
            assert not native, f"{pod.owner}: the classic variant runs the sidecar as a container"
            assert "restartPolicy" not in sidecar
            continue
        assert native, f"{pod.owner}: the sidecar is not a native sidecar"
        assert sidecar.get("restartPolicy") == "Always", f"{pod.owner}: restartPolicy Always"
        # Regular init containers before it would delay it and run to completion first.
        assert pod.spec["initContainers"][0] is sidecar, f"{pod.owner}: sidecar first"
        startup = sidecar.get("startupProbe", {}).get("httpGet", {})
        assert startup.get("path") == "/healthz", f"{pod.owner}: startupProbe on /healthz"
        assert resolve_port(sidecar, startup["port"]) in [
            port["containerPort"] for port in sidecar.get("ports", [])
        ]


def test_connect_probe_variables_are_settings(kdir: Path) -> None:
    known = setting_env_names()
    docs = render(kdir)
    unknown: list[str] = []
    for doc in docs:
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys = list(doc.get("data", {})) + list(doc.get("stringData", {}))
            unknown += [
                f"{doc['kind']}/{doc['metadata']['name']}: {key}"
                for key in keys
                if key.upper().startswith(ENV_PREFIX) and key.upper() not in known
            ]
    for pod in pod_templates(docs):
        for container in pod.all_containers():
            unknown += [
                f"{pod.owner} container {container['name']}: {entry['name']}"
                for entry in container.get("env", [])
                if entry["name"].upper().startswith(ENV_PREFIX)
                and entry["name"].upper() not in known
            ]
    assert not unknown, f"not settings of app.settings.Settings: {unknown}"


def test_sidecar_settings_are_valid(kdir: Path, secret_file: Path) -> None:
    docs = render(kdir)
    for pod, sidecar in sidecar_pods(docs):
        settings = sidecar_settings(docs, pod, sidecar, secret_file)
        declared = [p["containerPort"] for p in sidecar.get("ports", [])]
        assert settings.port in declared, f"{pod.owner}: sidecar listens on {settings.port}"
        host = settings.connect_url.split("://", 1)[1].rsplit(":", 1)[0]
        assert host in ("localhost", "127.0.0.1", "[::1]"), (
            f"{pod.owner}: CONNECT_URL must be the worker in this pod: {settings.connect_url}"
        )


def test_probes_hit_app_routes_on_the_sidecar_port(
    kdir: Path, app: FastAPI, secret_file: Path
) -> None:
    docs = render(kdir)
    for pod, sidecar in sidecar_pods(docs):
        port = sidecar_settings(docs, pod, sidecar, secret_file).port
        for container in pod.all_containers():
            for kind, probe in probes(container):
                where = f"{pod.owner} {container['name']}.{kind}"
                if "httpGet" in probe:
                    action = probe["httpGet"]
                    assert resolve_port(container, action["port"]) == port, (
                        f"{where}: port {action['port']!r} is not the sidecar's {port}"
                    )
                    path = action.get("path", "/").split("?", 1)[0]
                    assert serves_get(app, path), f"{where}: {path} is not a GET route of the app"
                    assert action.get("scheme", "HTTP") == "HTTP", f"{where}: the sidecar is HTTP"
                    assert "host" not in action, f"{where}: probes must go to the pod IP"
                else:
                    action = probe.get("tcpSocket") or probe.get("grpc") or {}
                    if "port" in action:
                        assert resolve_port(container, action["port"]) is not None, (
                            f"{where}: port {action['port']!r} is not declared by the container"
                        )


def test_probe_wiring(kdir: Path) -> None:
    """Connect is probed through the sidecar; the sidecar probes itself on /healthz."""
    for pod, sidecar in sidecar_pods(render(kdir)):
        assert sidecar.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz"
        workers = [c for c in pod.containers() if c is not sidecar]
        assert workers, f"{pod.owner}: no Connect container next to the sidecar"
        for worker in workers:
            ready = worker.get("readinessProbe", {}).get("httpGet", {})
            live = worker.get("livenessProbe", {}).get("httpGet", {})
            assert ready.get("path") == "/ready", f"{pod.owner} {worker['name']}: readiness"
            assert live.get("path") == "/live", f"{pod.owner} {worker['name']}: liveness"


def test_probe_timing(kdir: Path) -> None:
    for pod in pod_templates(render(kdir)):
        for container in pod.all_containers():
            for kind, probe in probes(container):
                timeout, period = probe.get("timeoutSeconds", 1), probe.get("periodSeconds", 10)
                assert 1 <= timeout <= period, (
                    f"{pod.owner} {container['name']}.{kind}: timeoutSeconds {timeout} "
                    f"must be at least 1 and at most periodSeconds {period}"
                )
                if kind == "livenessProbe":
                    assert probe.get("successThreshold", 1) == 1, "liveness successThreshold is 1"


def test_worker_id_is_pod_ip_and_connect_port(kdir: Path, secret_file: Path) -> None:
    """Connect advertises <pod IP>:<port> and the sidecar derives the same id."""
    docs = render(kdir)
    for pod, sidecar in sidecar_pods(docs):
        settings = sidecar_settings(docs, pod, sidecar, secret_file)
        env = {e["name"]: e for e in sidecar.get("env", [])}
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        for worker in (c for c in pod.containers() if c is not sidecar):
            worker_env = {e["name"]: e for e in worker.get("env", [])}
            assert worker_env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            script = "\n".join(worker.get("command", []) + worker.get("args", []))
            assert re.search(r"rest\.advertised\.host\.name=\S*\$\{?POD_IP", script) or (
                "rest.advertised.host.name=%s" in script and '"$POD_IP"' in script
            ), f"{pod.owner} {worker['name']}: rest.advertised.host.name is not the pod IP"
            port = re.search(r"rest\.advertised\.port=(\d+)", script)
            assert port is not None, f"{pod.owner} {worker['name']}: no rest.advertised.port"
            assert int(port.group(1)) == settings.connect_port(), (
                f"{pod.owner}: Connect advertises port {port.group(1)}, the sidecar expects "
                f"{settings.connect_port()}"
            )


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_match_pod_labels(kdir: Path) -> None:
    docs = render(kdir)
    pods = pod_templates(docs)
    for doc in docs:
        kind, meta, spec = doc["kind"], doc["metadata"], doc.get("spec", {})
        where = f"{kind}/{meta['name']}"
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            selector = spec["selector"]
            assert "matchExpressions" not in selector, f"{where}: use matchLabels only"
            labels = spec["template"]["metadata"]["labels"]
            assert selects(selector["matchLabels"], labels), f"{where}: selector vs template"
        elif kind == "Service" and "selector" in spec:
            assert any(
                selects(spec["selector"], p.labels) and p.namespace == meta.get("namespace")
                for p in pods
            ), f"{where}: selects no pod template"
        elif kind == "PodDisruptionBudget":
            assert any(
                selects(spec["selector"]["matchLabels"], p.labels)
                and p.namespace == meta.get("namespace")
                for p in pods
            ), f"{where}: selects no pod template"


def test_headless_service_publishes_not_ready_addresses(kdir: Path) -> None:
    docs = render(kdir)
    for doc in docs:
        if doc["kind"] != "StatefulSet":
            continue
        meta, spec = doc["metadata"], doc["spec"]
        service = find(docs, "Service", spec["serviceName"], meta.get("namespace"))
        assert service is not None, f"StatefulSet/{meta['name']}: no Service {spec['serviceName']}"
        assert service["spec"].get("clusterIP") == "None", "the governing Service is headless"
        assert service["spec"].get("publishNotReadyAddresses") is True, (
            "worker-to-worker forwarding must survive NotReady"
        )
        labels = spec["template"]["metadata"]["labels"]
        assert selects(service["spec"]["selector"], labels)
    for doc in docs:
        if doc["kind"] == "Service" and doc["spec"].get("clusterIP") == "None":
            assert doc["spec"].get("publishNotReadyAddresses") is True, doc["metadata"]["name"]


def effective(pod: PodTemplate, container: Manifest, key: str) -> Any:
    container_value = container.get("securityContext", {}).get(key)
    if container_value is not None:
        return container_value
    return pod.spec.get("securityContext", {}).get(key)


def test_containers_run_as_non_root_and_locked_down(kdir: Path) -> None:
    for pod in pod_templates(render(kdir)):
        for container in pod.all_containers():
            where = f"{pod.owner} {container['name']}"
            context = container.get("securityContext", {})
            assert effective(pod, container, "runAsNonRoot") is True, f"{where}: runAsNonRoot"
            assert effective(pod, container, "runAsUser") != 0, f"{where}: runAsUser 0"
            assert context.get("readOnlyRootFilesystem") is True, f"{where}: read-only root"
            assert context.get("allowPrivilegeEscalation") is False, f"{where}: escalation"
            assert "ALL" in context.get("capabilities", {}).get("drop", []), f"{where}: drop ALL"
            assert not context.get("privileged"), f"{where}: privileged"
            seccomp = effective(pod, container, "seccompProfile") or {}
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), f"{where}: seccomp"


def test_sidecar_has_requests_and_limits(kdir: Path) -> None:
    for pod, sidecar in sidecar_pods(render(kdir)):
        resources = sidecar.get("resources", {})
        for key in ("cpu", "memory"):
            assert key in resources.get("requests", {}), f"{pod.owner}: sidecar {key} request"
        assert "memory" in resources.get("limits", {}), f"{pod.owner}: sidecar memory limit"


def test_references_resolve(kdir: Path) -> None:
    """ConfigMaps and Secrets used by pods exist in the render (kustomize renamed refs too)."""
    docs = render(kdir)
    for pod in pod_templates(docs):
        wanted: list[tuple[str, str]] = []
        for volume in pod.spec.get("volumes", []):
            if "configMap" in volume and not volume["configMap"].get("optional"):
                wanted.append(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume and not volume["secret"].get("optional"):
                wanted.append(("Secret", volume["secret"]["secretName"]))
        for container in pod.all_containers():
            for source in container.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in source and not source[key].get("optional"):
                        wanted.append((kind, source[key]["name"]))
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {})
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if key in ref and not ref[key].get("optional"):
                        wanted.append((kind, ref[key]["name"]))
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"] for v in pod.spec.get("volumes", [])}
            assert mounts <= volumes, f"{pod.owner} {container['name']}: {mounts - volumes}"
        missing = [w for w in wanted if find(docs, w[0], w[1], pod.namespace) is None]
        assert not missing, f"{pod.owner}: references missing objects {missing}"


def test_images_are_pinned(kdir: Path) -> None:
    for pod in pod_templates(render(kdir)):
        for container in pod.all_containers():
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in image or (tag and tag != "latest"), f"{image}: pin a version"
