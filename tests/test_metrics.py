"""/metrics as Prometheus sees it: parsed with prometheus_client's parser through scenario changes,
with no duplicate series, and the alert rules in deploy/monitoring referring to real series."""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app.main import create_app
from app.metrics import POLL_ERROR_REASONS, STATE_ORDER, Metrics, StateSeries
from app.poller import PollObserver
from app.settings import Settings
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import OTHER_WORKER, THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect
from tools.sidecar import Sidecar, until_polled

pytestmark = pytest.mark.anyio

RULES = Path(__file__).parent.parent / "deploy" / "monitoring" / "prometheusrule.yaml"
Labels = frozenset[tuple[str, str]]


class Scrape:
    """One parsed exposition: ``value(name, **labels)``, ``series(name)``; duplicates fail."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, Labels], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"duplicate series {sample.name}{sample.labels}"
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def series(self, name: str, **match: str) -> list[dict[str, str]]:
        """Label sets of ``name``'s samples that carry every ``match`` label value."""
        found = []
        for sample_name, labels in self.samples:
            as_dict = dict(labels)
            if sample_name == name and all(as_dict.get(k) == v for k, v in match.items()):
                found.append(as_dict)
        return found

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


class Scraped(Sidecar):
    """A sidecar wired as in the app (metrics chained on the poller), polled and scraped by hand."""

    def __init__(self, fake: FakeConnect, clock: FakeClock | None = None, **overrides: Any) -> None:
        super().__init__(fake, clock, **overrides)
        self.metrics = Metrics(self.settings, self.clock, lambda: getattr(self, "core", None))

    def observers(self) -> tuple[PollObserver, ...]:
        return (self.metrics.observe_poll,)

    async def poll(self, advance: float = 5.0) -> None:
        self.clock.advance(advance)
        await super().poll()

    async def scrape(self) -> Scrape:
        return Scrape((await self.metrics.render()).decode())


def orders_sink(tasks: list[tuple[str, str]] | None = None) -> FakeConnect:
    fake = FakeConnect()
    fake.add(status("orders-sink", tasks=tasks or [("RUNNING", THIS_WORKER)]))
    return fake


def assert_state_set(scrape: Scrape, name: str, current: str, **key: str) -> None:
    """Every known state once (plus an unknown current one), 1 only for ``current``."""
    found = {labels["state"]: scrape.value(name, **labels) for labels in scrape.series(name, **key)}
    assert set(found) == set(STATE_ORDER) | {current}
    assert {state for state, value in found.items() if value == 1.0} == {current}


# --- scenarios ------------------------------------------------------------------------------
async def test_running_then_failed_then_deleted() -> None:
    fake = orders_sink([("RUNNING", THIS_WORKER), ("RUNNING", OTHER_WORKER)])
    async with Scraped(fake) as sidecar:
        before = await sidecar.scrape()
        assert before.value("connect_probe_connect_up") == 0.0  # no poll yet
        assert before.series("kafka_connect_task_state") == []

        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert_state_set(
            scrape,
            "kafka_connect_connector_state",
            "RUNNING",
            connector="orders-sink",
            worker_id=THIS_WORKER,
        )
        assert_state_set(
            scrape,
            "kafka_connect_task_state",
            "RUNNING",
            connector="orders-sink",
            task="0",
            worker_id=THIS_WORKER,
        )
        # Task 1 runs on the other worker: its sidecar exports it, not this one.
        assert scrape.series("kafka_connect_task_state", task="1") == []
        assert scrape.value("kafka_connect_connectors", state="RUNNING") == 1.0
        assert scrape.value("kafka_connect_tasks", state="RUNNING") == 1.0
        assert scrape.value("kafka_connect_tasks", state="FAILED") == 0.0
        for name in ("ready", "live", "connect_up", "worker_healthy"):
            assert scrape.value(f"connect_probe_{name}") == 1.0, name
        assert scrape.value(
            "connect_probe_build_info", version="0.1.0", connect_version="3.9.0"
        ) == (1.0)
        assert scrape.value("connect_probe_last_success_timestamp_seconds") == pytest.approx(
            sidecar.clock.wall()
        )

        fake.set_task("orders-sink", 0, "FAILED")
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert_state_set(
            scrape, "kafka_connect_task_state", "FAILED", connector="orders-sink", task="0"
        )
        assert scrape.value("kafka_connect_tasks", state="FAILED") == 1.0
        assert scrape.value("kafka_connect_tasks", state="RUNNING") == 0.0
        assert scrape.value("connect_probe_ready") == 0.0
        assert scrape.value("connect_probe_live") == 1.0  # states never fail liveness by default

        del fake.connectors["orders-sink"]
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert scrape.series("kafka_connect_connector_state") == []
        assert scrape.series("kafka_connect_task_state") == []
        assert {scrape.value("kafka_connect_tasks", state=s) for s in STATE_ORDER} == {0.0}
        assert scrape.value("connect_probe_ready") == 1.0
        assert scrape.value("connect_probe_poll_duration_seconds_count") == 3.0


async def test_poll_failures_count_by_reason_and_stale_objects_disappear() -> None:
    fake = orders_sink()
    async with Scraped(fake) as sidecar:
        await sidecar.poll()
        last_success = sidecar.clock.wall()
        fake.down = True
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert scrape.value("connect_probe_connect_up") == 0.0
        assert scrape.value("connect_probe_ready") == 0.0
        assert scrape.value("connect_probe_poll_errors_total", reason="connect_unreachable") == 1
        for reason in POLL_ERROR_REASONS:  # all exported from the start, for rate()
            assert scrape.series("connect_probe_poll_errors_total", reason=reason) != []
        assert scrape.value("connect_probe_last_success_timestamp_seconds") == last_success
        # Within MAX_AGE the last known states stay, so one failed poll resets no alert.
        assert len(scrape.series("kafka_connect_task_state", connector="orders-sink")) == 7

        await sidecar.poll(advance=sidecar.settings.max_age)
        scrape = await sidecar.scrape()
        assert scrape.value("connect_probe_poll_errors_total", reason="connect_unreachable") == 2
        assert scrape.series("kafka_connect_task_state") == []
        assert scrape.series("kafka_connect_tasks") == []
        assert "connect_probe_worker_healthy" not in scrape.names()
        assert scrape.value("connect_probe_last_success_timestamp_seconds") == last_success
        assert scrape.value("connect_probe_poll_duration_seconds_count") == 3.0

        fake.down = False
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert scrape.value("connect_probe_connect_up") == 1.0
        assert scrape.value("kafka_connect_tasks", state="RUNNING") == 1.0


async def test_an_unknown_state_from_connect_is_exported_too() -> None:
    fake = FakeConnect()
    fake.add(status("future-source", state="HIBERNATING", tasks=[("RUNNING", THIS_WORKER)]))
    async with Scraped(fake) as sidecar:
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert_state_set(
            scrape, "kafka_connect_connector_state", "HIBERNATING", connector="future-source"
        )
        assert scrape.value("kafka_connect_connectors", state="HIBERNATING") == 1.0


async def test_tasks_on_several_workers_make_no_duplicate_series() -> None:
    body = status("orders-sink", tasks=[("RUNNING", THIS_WORKER), ("FAILED", OTHER_WORKER)])
    body["tasks"].append(dict(body["tasks"][0]))  # Connect listing a task twice, mid-rebalance
    fake = FakeConnect()
    fake.add(body)
    async with Scraped(fake, metrics_scope="cluster") as sidecar:
        await sidecar.poll()
        scrape = await sidecar.scrape()  # Scrape() fails on any duplicate
        connector = scrape.series("kafka_connect_connector_state", state="RUNNING")
        assert [labels["worker_id"] for labels in connector] == [THIS_WORKER]
        workers = {
            labels["task"]: labels["worker_id"]
            for labels in scrape.series("kafka_connect_task_state", state="RUNNING")
        }
        assert workers == {"0": THIS_WORKER, "1": OTHER_WORKER}
        assert scrape.value("kafka_connect_tasks", state="FAILED") == 1.0


async def test_scope_follows_the_probes_unless_cluster_wide() -> None:
    fake = orders_sink([("FAILED", OTHER_WORKER)])
    fake.add(status("audit-sink", worker=OTHER_WORKER, tasks=[("RUNNING", OTHER_WORKER)]))
    async with Scraped(fake, exclude=("orders-*",)) as sidecar:
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert scrape.series("kafka_connect_connector_state") == []  # excluded / other worker
        assert scrape.series("kafka_connect_task_state") == []
    async with Scraped(fake, exclude=("orders-*",), metrics_scope="cluster") as sidecar:
        await sidecar.poll()
        scrape = await sidecar.scrape()
        connectors = {s["connector"] for s in scrape.series("kafka_connect_connector_state")}
        assert connectors == {"orders-sink", "audit-sink"}
        assert scrape.value("kafka_connect_tasks", state="FAILED") == 1.0
        assert scrape.value("connect_probe_ready") == 1.0  # the probes still judge their scope


async def test_worker_health_is_absent_before_connect_3_9() -> None:
    fake = orders_sink()
    fake.health = None  # JSON 404, as Connect < 3.9 answers
    async with Scraped(fake) as sidecar:
        await sidecar.poll()
        assert "connect_probe_worker_healthy" not in (await sidecar.scrape()).names()
        fake.health = (500, {"status": "unhealthy", "message": "lost the group coordinator"})
        sidecar.clock.advance(sidecar.settings.health_recheck_interval)
        await sidecar.poll()
        assert (await sidecar.scrape()).value("connect_probe_worker_healthy") == 0.0


async def test_long_and_odd_names_are_exported_verbatim() -> None:
    name = 'odd "sink"\\ with\nnewline \x1b[31m ' + "x" * 5000
    fake = FakeConnect()
    fake.add(status(name, tasks=[("RUNNING", THIS_WORKER)]))
    async with Scraped(fake) as sidecar:
        await sidecar.poll()
        scrape = await sidecar.scrape()
        assert (
            scrape.value(
                "kafka_connect_task_state",
                connector=name,
                task="0",
                state="RUNNING",
                worker_id=THIS_WORKER,
            )
            == 1.0
        )


def test_metrics_scope_is_validated() -> None:
    assert Settings().metrics_scope == "probe"
    with pytest.raises(ValidationError, match="metrics_scope"):
        Settings(metrics_scope="everything")


# --- the alert rules ----------------------------------------------------------------------
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset"}
TARGET_LABELS = {"pod", "namespace", "instance", "job", "service", "endpoint", "container"}
SERIES_BY_PROMETHEUS = {"up"}  # written by Prometheus for each target, not by the sidecar
# Exported only with progress checks on (KAFKA_BOOTSTRAP_SERVERS).
PROGRESS_SERIES = {
    "kafka_connect_task_lag",
    "kafka_connect_task_progress",
    "connect_probe_kafka_up",
}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert document["kind"] == "PrometheusRule"
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def selectors(expr: str) -> Iterator[tuple[str, dict[str, str]]]:
    """``(metric, {label: value})`` for each series selector in a (simple) PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group(0).replace(" ", "\0"), expr)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range durations
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)  # label lists
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?", text):
        name, matchers, call = match.groups()
        if call or name in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        labels = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', (matchers or "").replace("\0", " ")))
        yield name, labels


async def test_alert_rules_reference_series_that_exist() -> None:
    fake = FakeConnect()
    fake.add(status("orders-sink", state="FAILED", tasks=[("FAILED", THIS_WORKER)]))
    async with Scraped(fake) as sidecar:
        await sidecar.poll()
        scrape = await sidecar.scrape()
    alerts = rules()
    assert {rule["alert"] for rule in alerts} >= {
        "KafkaConnectConnectorFailed",
        "KafkaConnectTaskFailed",
        "ConnectProbeCannotReachConnect",
        "ConnectProbeReadinessFlapping",
        "KafkaConnectWorkerUnhealthy",
    }
    for rule in alerts:
        found = list(selectors(rule["expr"]))
        assert found, rule["alert"]
        for name, labels in found:
            if name in SERIES_BY_PROMETHEUS or name in PROGRESS_SERIES:
                continue  # progress series: checked with the checks on (test_progress_loop.py)
            assert scrape.series(name, **labels), f"{rule['alert']}: no series {name}{labels}"
            exported = set().union(*(s.keys() for s in scrape.series(name)))
            used = set(re.findall(r"\$labels\.(\w+)", str(rule.get("annotations", {}))))
            assert used <= exported | TARGET_LABELS, f"{rule['alert']}: unknown {used - exported}"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert "summary" in rule["annotations"]


def test_every_alert_is_documented() -> None:
    readme = (RULES.parent / "README.md").read_text(encoding="utf-8")
    for rule in rules():
        assert f"`{rule['alert']}`" in readme, rule["alert"]


# --- the route --------------------------------------------------------------------------------
@pytest.fixture
def fake() -> FakeConnect:
    return orders_sink()


@pytest.fixture
def client(fake: FakeConnect) -> Iterator[TestClient]:
    settings = Settings(worker_id=THIS_WORKER)
    app = create_app(settings, transport=fake.transport(), clock=FakeClock(instant=False))
    with TestClient(app) as test_client:
        until_polled(test_client)
        assert test_client.get("/ready").status_code == 200
        yield test_client


def test_get_metrics_serves_the_text_format(client: TestClient) -> None:
    response = client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["content-encoding"] == "gzip"  # httpx asks for it; Prometheus too
    scrape = Scrape(response.text)
    assert scrape.value("connect_probe_ready") == 1.0
    assert scrape.value("kafka_connect_tasks", state="RUNNING") == 1.0
    assert scrape.value("connect_probe_poll_duration_seconds_count") >= 1.0  # fed by the poller
    assert scrape.types["connect_probe_poll_duration_seconds"] == "histogram"
    assert scrape.types["connect_probe_poll_errors"] == "counter"

    plain = client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert Scrape(plain.text).value("connect_probe_ready") == 1.0


def test_head_metrics(client: TestClient) -> None:
    response = client.head("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.content == b""


def test_metrics_answers_503_not_500_when_rendering_fails(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: StateSeries, view: Any) -> Iterator[Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(StateSeries, "collect", broken)
    response = client.get("/metrics")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/plain")
    assert "RuntimeError" in response.text
    assert client.get("/ready").status_code == 200  # probes are unaffected
