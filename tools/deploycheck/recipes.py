"""deploy/recipes/: files users apply to platforms we do not render ourselves, made checkable.

CFK's pod overlay (deploy/recipes/cfk/pod-template.yaml) is a fragment of a StatefulSet spec that
CFK merges into its own. Its containers are wrapped here in a Pod next to a stand-in for CFK's
Connect container, so ``kubernetes-validate --strict`` can judge them as Kubernetes would::

    python -m tools.deploycheck.recipes build/deploy/recipes
"""

import argparse
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CFK_OVERLAY = ROOT / "deploy" / "recipes" / "cfk" / "pod-template.yaml"
# What CFK itself puts in the pod (its image and probes are CFK's business, not the recipe's).
CFK_CONNECT = {"name": "connect", "image": "confluentinc/cp-server-connect:7.9.0"}


def cfk_overlay() -> dict[str, Any]:
    overlay: dict[str, Any] = yaml.safe_load(CFK_OVERLAY.read_text(encoding="utf-8"))
    return overlay


def cfk_pod() -> dict[str, Any]:
    """A Pod as CFK would run it with the overlay merged (containers are merged by name)."""
    spec = dict(cfk_overlay()["spec"]["template"]["spec"])
    spec["containers"] = [CFK_CONNECT, *spec.get("containers", [])]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "connect-0", "namespace": "confluent"},
        "spec": spec,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "cfk-pod-overlay.yaml"
    target.write_text(yaml.safe_dump(cfk_pod(), sort_keys=False), encoding="utf-8")
    print(f"rendered {CFK_OVERLAY.relative_to(ROOT)} -> {target}")  # noqa: T201 - script output


if __name__ == "__main__":
    main()
