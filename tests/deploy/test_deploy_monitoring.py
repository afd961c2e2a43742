"""deploy/monitoring (a Kustomize component) added to the example overlay: the ServiceMonitor
finds the metrics Service, the Service finds the sidecar's port on every pod (Ready or not), and
the job label the ConnectProbeDown alert matches is the one the ServiceMonitor sets."""

import os
from pathlib import Path

import pytest
import yaml

from tools.deploycheck.manifests import DEPLOY, Manifest, is_sidecar, pod_templates, render

pytestmark = pytest.mark.process  # kubectl kustomize

NAMESPACE = "monitoring-test"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, ...]:
    overlay = tmp_path_factory.mktemp("overlay")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": NAMESPACE,
        "resources": [os.path.relpath(DEPLOY / "overlays" / "example", overlay)],
        "components": [os.path.relpath(DEPLOY / "monitoring", overlay)],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return render(Path(overlay))


def one(docs: tuple[Manifest, ...], kind: str) -> Manifest:
    found = [doc for doc in docs if doc["kind"] == kind and "probe" in doc["metadata"]["name"]]
    assert len(found) == 1, f"{kind}: {[d['metadata']['name'] for d in found]}"
    assert found[0]["metadata"].get("namespace") == NAMESPACE
    return found[0]


def test_service_selects_the_sidecar_port_of_every_pod(docs: tuple[Manifest, ...]) -> None:
    service = one(docs, "Service")
    assert service["spec"]["publishNotReadyAddresses"] is True  # a NotReady worker matters most
    (template,) = pod_templates(docs)
    assert service["spec"]["selector"].items() <= template.labels.items()
    (sidecar,) = [c for c in template.all_containers() if is_sidecar(c)]  # native or classic
    ports = {port["name"]: port["containerPort"] for port in sidecar["ports"]}
    for port in service["spec"]["ports"]:
        assert ports[port["targetPort"]] == port["port"]


def test_service_monitor_scrapes_that_service(docs: tuple[Manifest, ...]) -> None:
    service, monitor = one(docs, "Service"), one(docs, "ServiceMonitor")
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    names = {port["name"] for port in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert endpoint["port"] in names
        assert endpoint["path"] == "/metrics"
    job = service["metadata"]["labels"][spec["jobLabel"]]
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    (down,) = [rule for rule in rules if rule["alert"] == "ConnectProbeDown"]
    assert f'job="{job}"' in down["expr"]
