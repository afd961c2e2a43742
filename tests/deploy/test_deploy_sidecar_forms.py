"""The two forms of the sidecar: native (deploy/base, Kubernetes >= 1.29) and classic
(deploy/components/classic-sidecar, for older clusters) differ only in where the sidecar sits."""

import pytest

from tools.deploycheck.manifests import CLASSIC, DEPLOY, render, sidecar_pods

pytestmark = pytest.mark.process  # kubectl kustomize


def test_classic_variant_is_the_same_sidecar_as_a_container() -> None:
    """components/classic-sidecar only moves the sidecar: image, settings, probes, resources and
    securityContext stay as deploy/base has them, and nothing else in the render changes."""
    native_docs = render(DEPLOY / "overlays" / "example")
    classic_docs = render(DEPLOY / "overlays" / f"example-{CLASSIC}")
    ((native_pod, native),) = sidecar_pods(native_docs)
    ((classic_pod, classic),) = sidecar_pods(classic_docs)
    assert {k: v for k, v in native.items() if k != "restartPolicy"} == classic
    assert classic_pod.containers() == [*native_pod.containers(), classic]
    assert not classic_pod.spec.get("initContainers")
    rest = ("containers", "initContainers")
    assert {k: v for k, v in native_pod.spec.items() if k not in rest} == {
        k: v for k, v in classic_pod.spec.items() if k not in rest
    }
    assert [d for d in native_docs if d["kind"] != "StatefulSet"] == [
        d for d in classic_docs if d["kind"] != "StatefulSet"
    ]
