"""deploy/recipes/cfk: CFK's pod overlay holds what CFK accepts, a sidecar wired as the base's,
and settings that parse. (``make deploy-check`` validates it as a Pod with kubernetes-validate.)"""

import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tools.deploycheck.manifests import (
    DEPLOY,
    Manifest,
    environment,
    is_sidecar,
    render,
    resolve_port,
    serves_get,
    sidecar_pods,
)
from tools.deploycheck.recipes import CFK_CONNECT, cfk_overlay, cfk_pod

pytestmark = pytest.mark.process  # kubectl kustomize


def overlay_sidecar() -> Manifest:
    sidecar: Manifest
    (sidecar,) = cfk_overlay()["spec"]["template"]["spec"]["containers"]
    assert is_sidecar(sidecar)
    return sidecar


def test_overlay_sets_only_what_cfk_lets_it() -> None:
    """CFK: the file starts at `spec` (a StatefulSet's); it may set `spec.template` only."""
    overlay = cfk_overlay()
    assert set(overlay) == {"spec"}
    assert set(overlay["spec"]) == {"template"}
    containers = overlay["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["connect-probe"], (
        "CFK's connect container is left alone"
    )


def test_overlay_sidecar_gates_pod_readiness_and_guards_itself() -> None:
    sidecar = overlay_sidecar()
    pod = cfk_pod()
    env = {e["name"]: e["value"] for e in sidecar["env"]}
    with environment(env):
        settings = Settings()
    app: FastAPI = create_app(settings)
    assert settings.connect_port() == 8083
    assert settings.scope == "worker"
    assert settings.worker_id is None, "CFK's FQDN is auto-detected"
    assert settings.pod_ip is None
    assert pod["spec"]["containers"][0] == CFK_CONNECT
    for kind, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
        action = sidecar[kind]["httpGet"]
        assert action["path"] == path
        assert resolve_port(sidecar, action["port"]) == settings.port
        assert serves_get(app, path)
        assert sidecar[kind]["timeoutSeconds"] <= sidecar[kind]["periodSeconds"]


def test_overlay_sidecar_is_sized_and_locked_down_as_the_base() -> None:
    """Same image, resources and securityContext as deploy/base (which sets seccomp pod-wide)."""
    ((pod, base),) = sidecar_pods(render(DEPLOY / "base"))
    sidecar = overlay_sidecar()
    assert sidecar["image"] == base["image"]
    assert sidecar["resources"] == base["resources"], (
        "deploy/base's sidecar resources changed: carry them over to deploy/recipes/cfk"
    )
    context = dict(sidecar["securityContext"])
    assert context.pop("seccompProfile") == pod.spec["securityContext"]["seccompProfile"]
    assert context == base["securityContext"]
