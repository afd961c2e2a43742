"""Turn deploy/monitoring's PrometheusRule into what promtool and a plain Prometheus read.

promtool and Prometheus load rule files (``groups:`` at the top), not the Prometheus Operator's
``PrometheusRule`` object, so ``spec.groups`` is written out as a rules file. The promtool unit
tests in tests/deploy/promtool/ leave ``rule_files`` empty; copies next to the rules file get it
filled in, so the tests always run against the alerts as shipped::

    python -m tools.deploycheck.promrules build/prometheus
    promtool check rules build/prometheus/kafka-connect-probe.rules.yaml
    promtool test rules build/prometheus/*.test.yaml
"""

import argparse
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_RULE = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"
UNIT_TESTS = ROOT / "tests" / "deploy" / "promtool"
RULES_FILE = "kafka-connect-probe.rules.yaml"


def rule_groups(source: Path = PROMETHEUS_RULE) -> list[dict[str, Any]]:
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    if document.get("kind") != "PrometheusRule":
        raise ValueError(f"{source}: not a PrometheusRule")
    groups: list[dict[str, Any]] = document["spec"]["groups"]
    return groups


def alerts(source: Path = PROMETHEUS_RULE) -> dict[str, dict[str, Any]]:
    """Every alerting rule by name."""
    return {
        rule["alert"]: rule
        for group in rule_groups(source)
        for rule in group["rules"]
        if "alert" in rule
    }


def unit_tests() -> list[Path]:
    return sorted(UNIT_TESTS.glob("*.test.yaml"))


def write_rules(out: Path, source: Path = PROMETHEUS_RULE) -> Path:
    """The rules file for ``source``, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rules = out / RULES_FILE
    rules.write_text(
        yaml.safe_dump({"groups": rule_groups(source)}, sort_keys=False), encoding="utf-8"
    )
    return rules


def write_unit_tests(out: Path, rules: Path) -> list[Path]:
    """Copies of the promtool unit tests that load ``rules``."""
    written = []
    for test in unit_tests():
        document = yaml.safe_load(test.read_text(encoding="utf-8"))
        document["rule_files"] = [str(rules.resolve())]
        target = out / test.name
        target.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for the rules file and the tests")
    args = parser.parse_args()
    for stale in args.out.glob("*.test.yaml"):
        stale.unlink()
    rules = write_rules(args.out)
    tests = write_unit_tests(args.out, rules)
    print(f"{rules}: {len(alerts())} alerts; {len(tests)} promtool test files")  # noqa: T201


if __name__ == "__main__":
    main()
