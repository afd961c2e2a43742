"""The alerts in deploy/monitoring/prometheusrule.yaml, judged by Prometheus's own promtool.

The unit tests themselves are in tests/deploy/promtool/ (``make deploy-alerts`` runs them too).
Here: every alert has tests on both sides (fires, and stays silent on a near miss), and the tests
are sharp enough to fail when an alert is changed: without its ``for``, with a longer ``for``,
with a wider expression (the near misses fire) or one that never matches.
"""

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.deploycheck.prometheus_tools import binary
from tools.deploycheck.promrules import (
    PROMETHEUS_RULE,
    alerts,
    rule_groups,
    unit_tests,
    write_rules,
)

pytestmark = pytest.mark.process  # promtool

ALERTS = alerts()
# A wider expression per alert: what its near-miss tests must catch.
WIDER = {
    "KafkaConnectConnectorFailed": ('{state="FAILED"}', ""),
    "KafkaConnectTaskFailed": ('{state="FAILED"}', ""),
    "ConnectProbeCannotReachConnect": ("== 0", "<= 1"),
    "ConnectProbeReadinessFlapping": ("> 4", "> 3"),
    "KafkaConnectWorkerUnhealthy": ("== 0", "<= 1"),
    "ConnectProbeDown": ('{job="connect-probe-metrics"}', ""),
    "KafkaConnectSinkTaskStalled": ('{state="stalled"}', ""),
    "KafkaConnectSinkTaskNotConsuming": ('{state="not_consuming"}', ""),
    "KafkaConnectSinkTaskFallingBehind": ('{state="behind"}', ""),
    "ConnectProbeCannotReadKafka": ("== 0", "<= 1"),
}


def cases(alert: str) -> list[dict[str, Any]]:
    """Every alert_rule_test case for ``alert`` in tests/deploy/promtool/."""
    found = []
    for path in unit_tests():
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            found += [c for c in test.get("alert_rule_test", []) if c["alertname"] == alert]
    return found


def test_every_alert_is_unit_tested_both_ways() -> None:
    assert set(WIDER) == set(ALERTS), "a new alert needs a WIDER mutation and promtool tests"
    for alert in ALERTS:
        found = cases(alert)
        assert any(c.get("exp_alerts") for c in found), f"{alert}: no test where it fires"
        assert any(not c.get("exp_alerts") for c in found), f"{alert}: no near-miss test"
    tested = {c["alertname"] for path in unit_tests() for c in _all_cases(path)}
    assert tested <= set(ALERTS), f"tests for alerts that do not exist: {tested - set(ALERTS)}"


def _all_cases(path: Path) -> list[dict[str, Any]]:
    tests = yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def promtool_test(
    rules_source: Path, alert: str | None, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: the unit tests of ``alert`` (all if None) on ``rules_source``."""
    rules = write_rules(workdir, rules_source)
    files = []
    for path in unit_tests():
        if alert is None or any(c["alertname"] == alert for c in _all_cases(path)):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            document["rule_files"] = [str(rules)]
            target = workdir / path.name
            target.write_text(yaml.safe_dump(document), encoding="utf-8")
            files.append(str(target))
    assert files, f"no promtool tests for {alert}"
    return subprocess.run(
        [binary("promtool"), "test", "rules", *files], capture_output=True, text=True, check=False
    )


def mutated(alert: str, change: str, workdir: Path) -> Path:
    """prometheusrule.yaml with one alert changed."""
    document = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    document["spec"]["groups"] = rule_groups()
    (rule,) = [r for g in document["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    if change == "no-for":
        del rule["for"]
    elif change == "longer-for":
        rule["for"] = "10m"
    elif change == "wider":
        old, new = WIDER[alert]
        assert old in rule["expr"], f"{alert}: {old!r} not in {rule['expr']!r}"
        rule["expr"] = rule["expr"].replace(old, new)
    elif change == "never":
        rule["expr"] = f"({rule['expr']}) unless on() vector(1)"
    path = workdir / "prometheusrule.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_promtool_passes_on_the_shipped_alerts(tmp_path: Path) -> None:
    result = promtool_test(PROMETHEUS_RULE, None, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(unit_tests())


MUTATIONS = [
    pytest.param(alert, change, id=f"{alert}-{change}")
    for alert, rule in ALERTS.items()
    for change in ("wider", "never", *(("no-for", "longer-for") if "for" in rule else ()))
]


@pytest.mark.parametrize(("alert", "change"), MUTATIONS)
def test_promtool_tests_catch_a_changed_alert(alert: str, change: str, tmp_path: Path) -> None:
    result = promtool_test(mutated(alert, change, tmp_path), alert, tmp_path)
    assert result.returncode != 0, f"{alert} {change}: the unit tests still pass\n{result.stdout}"
    assert "FAILED" in result.stdout + result.stderr
