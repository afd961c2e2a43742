"""A real Prometheus (Debian's 2.42) scrapes a real ``connect-probe`` process that watches a fake
Connect, with deploy/monitoring's alerts loaded. Everything runs on 127.0.0.1 and is stopped by
PID. It shows what reading the manifests cannot: the series names and labels the alerts match
are the ones the sidecar exports, Prometheus ingests them without errors, and the alerts load
and evaluate (KafkaConnectTaskFailed goes pending on the FAILED tasks).
"""

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tools.deploycheck.prometheus_tools import RunningPrometheus, run_prometheus
from tools.deploycheck.promrules import alerts, write_rules
from tools.fakeconnect.bodies import LONG_TRACE, status
from tools.fakeconnect.model import FakeConnect
from tools.fakeconnect.threaded import serve_fake
from tools.procs import RunningSidecar, run_sidecar

pytestmark = pytest.mark.process  # a real Prometheus and sidecar

JOB = "connect-probe-metrics"  # the job the ServiceMonitor produces; ConnectProbeDown matches it
TASKS = 2
CONNECTOR = "deploy-check-connector"
# Prometheus's own counters of samples or scrapes it refused; all must stay 0.
SCRAPE_PROBLEMS = (
    "prometheus_target_scrapes_sample_out_of_order_total",
    "prometheus_target_scrapes_sample_duplicate_timestamp_total",
    "prometheus_target_scrapes_sample_out_of_bounds_total",
    "prometheus_target_scrapes_exceeded_sample_limit_total",
    "prometheus_target_scrapes_exceeded_body_size_limit_total",
    "prometheus_target_scrape_pool_exceeded_label_limits_total",
    "prometheus_rule_evaluation_failures_total",
)


@dataclass
class Stack:
    prometheus: RunningPrometheus
    sidecar: RunningSidecar
    worker_id: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Fake Connect (connector RUNNING, both tasks FAILED) <- sidecar <- Prometheus."""
    workdir = tmp_path_factory.mktemp("prometheus")
    connect = FakeConnect()
    with serve_fake(connect) as url:
        worker_id = url.removeprefix("http://")  # what POD_IP=127.0.0.1 detects
        tasks = [("FAILED", worker_id, LONG_TRACE)] * TASKS
        connect.add(status(CONNECTOR, "RUNNING", worker_id, tasks, kind="source"))
        env = {
            "CONNECT_PROBE_CONNECT_URL": url,
            "CONNECT_PROBE_POLL_INTERVAL": "0.5",
            "CONNECT_PROBE_TIMEOUT": "1",
            "POD_IP": "127.0.0.1",
        }
        with run_sidecar(env, workdir) as sidecar:
            target = sidecar.url.removeprefix("http://")
            config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(write_rules(workdir / "rules"))],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "metrics_path": "/metrics",
                        "static_configs": [
                            {"targets": [target], "labels": {"pod": "kafka-connect-0"}}
                        ],
                    }
                ],
            }
            with run_prometheus(config, workdir) as prometheus:
                yield Stack(prometheus, sidecar, worker_id)


def eventually(check: Callable[[], Any], seconds: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy (scrapes and rule runs are every 1 s)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def values(prometheus: RunningPrometheus, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant query: {sorted labels without job/instance/pod: value}."""
    found = {}
    for sample in prometheus.query(promql):
        labels = {k: v for k, v in sample["metric"].items() if k not in ("job", "instance", "pod")}
        found[tuple(sorted(labels.items()))] = float(sample["value"][1])
    return found


def test_target_is_up_without_scrape_errors(stack: Stack) -> None:
    prometheus = stack.prometheus
    up = eventually(lambda: prometheus.query(f'up{{job="{JOB}"}} == 1'))
    assert len(up) == 1, (up, prometheus.output())
    (target,) = prometheus.api("targets", state="active")["activeTargets"]
    assert target["health"] == "up", target
    assert target["lastError"] == "", target
    assert target["scrapeUrl"] == f"{stack.sidecar.url}/metrics"
    scraped = prometheus.query(f'scrape_samples_scraped{{job="{JOB}"}}')
    assert float(scraped[0]["value"][1]) > 0
    own = prometheus.own_metrics()
    for counter in SCRAPE_PROBLEMS:
        lines = [line for line in own.splitlines() if line.startswith(counter)]
        assert lines, f"{counter} not exported by this Prometheus"
        assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in lines), lines
    assert not re.search(r"level=error", prometheus.output()), prometheus.output()


def test_task_and_connector_series_carry_the_states(stack: Stack) -> None:
    prometheus, worker = stack.prometheus, stack.worker_id
    failed = eventually(lambda: values(prometheus, 'kafka_connect_task_state{state="FAILED"} == 1'))
    assert failed == {
        (("__name__", "kafka_connect_task_state"), ("connector", CONNECTOR), ("state", "FAILED"),
         ("task", str(task)), ("worker_id", worker)): 1.0
        for task in range(TASKS)
    }  # fmt: skip
    tasks = values(prometheus, 'kafka_connect_task_state{task="0"}')
    by_state = {dict(labels)["state"]: value for labels, value in tasks.items()}
    assert by_state["FAILED"] == 1.0
    assert by_state["RUNNING"] == 0.0
    assert sum(by_state.values()) == 1.0, by_state  # a state set: exactly one state is 1
    connector = values(prometheus, f'kafka_connect_connector_state{{connector="{CONNECTOR}"}}')
    by_state = {dict(labels)["state"]: value for labels, value in connector.items()}
    assert by_state["RUNNING"] == 1.0
    assert by_state["FAILED"] == 0.0
    assert {dict(labels)["worker_id"] for labels in connector} == {worker}
    counts = values(prometheus, 'kafka_connect_tasks{state="FAILED"}')
    assert list(counts.values()) == [float(TASKS)]


def test_probe_verdicts_are_series(stack: Stack) -> None:
    prometheus = stack.prometheus
    verdicts = eventually(
        lambda: values(prometheus, '{__name__=~"connect_probe_(ready|live|connect_up)"}')
    )
    by_name = {dict(labels)["__name__"]: value for labels, value in verdicts.items()}
    assert by_name == {
        "connect_probe_ready": 0.0,  # this worker's tasks are FAILED
        "connect_probe_live": 1.0,  # task states never fail /live by default
        "connect_probe_connect_up": 1.0,
    }
    assert values(prometheus, "connect_probe_worker_healthy") != {}


def test_alerts_load_and_match_the_sidecar_series(stack: Stack) -> None:
    prometheus = stack.prometheus

    def evaluated() -> list[dict[str, Any]]:
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return (
            rules
            if all(rule.get("lastEvaluation", "0001").startswith("20") for rule in rules)
            else []
        )

    rules = eventually(evaluated)
    assert {rule["name"] for rule in rules} == set(alerts())
    assert all(rule["health"] == "ok" for rule in rules), rules

    def task_failed() -> list[dict[str, Any]]:
        active = prometheus.api("alerts")["alerts"]
        return [a for a in active if a["labels"]["alertname"] == "KafkaConnectTaskFailed"]

    pending = eventually(lambda: len(task_failed()) == TASKS and task_failed())
    assert {a["labels"]["task"] for a in pending} == {str(task) for task in range(TASKS)}
    assert {a["state"] for a in pending} == {"pending"}  # `for: 5m` has not passed
    assert all(a["labels"]["worker_id"] == stack.worker_id for a in pending)
    others = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}
    assert others == {"KafkaConnectTaskFailed"}, others
