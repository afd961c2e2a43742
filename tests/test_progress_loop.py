"""The progress loop wired to a fake Connect, a fake Kafka reader and a hand-moved clock:
which tasks are read, what /ready, /live, /status and /metrics say, and auto-restart of stalled
tasks. The window rules themselves are table-tested in test_progress_rules.py."""

import json
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.progress.reading import KafkaUnavailable
from app.progress.rules import GroupRead, KafkaRead, Member, client_id
from app.progress.wiring import ProgressRuntime, build
from app.rules import Rules
from tools.fakeconnect.bodies import OTHER_WORKER, THIS_WORKER, status
from tools.fakeconnect.model import Canned, FakeConnect
from tools.sidecar import Sidecar, codes

pytestmark = pytest.mark.anyio

SECRET = "sw0rdfish-kafka"
KAFKA: dict[str, Any] = {"kafka_bootstrap_servers": "kafka:9092", "progress_interval": 30.0}


class FakeReader:
    """Kafka as a dict: group -> (members, committed); partition -> log-end offset."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupRead] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self.down: str | None = None
        self.calls: list[tuple[str, ...]] = []
        self.threads: set[str] = set()

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        self.calls.append(tuple(groups))
        self.threads.add(threading.current_thread().name)
        if self.down:
            raise KafkaUnavailable(self.down)
        found = {g: self.groups[g] for g in groups if g in self.groups}
        return KafkaRead(found, dict(self.ends), dict.fromkeys(self.ends, 0))

    def consume(
        self,
        connector: str,
        task: int,
        committed: int,
        end: int,
        *,
        group: str | None = None,
        member: bool = True,
        member_id: str = "m1",
    ) -> None:
        """One task on topic ``<connector>-t`` partition ``task``."""
        group = group or f"connect-{connector}"
        tp = (f"{connector}-t", task)
        old = self.groups.get(group, GroupRead(group, (), {}))
        members = tuple(m for m in old.members if m.client_id != client_id(connector, task))
        if member:
            members += (Member(member_id, client_id(connector, task), "/10.0.0.1", (tp,)),)
        self.groups[group] = GroupRead(group, members, {**old.committed, tp: committed})
        self.ends[tp] = end


class Progress:
    """A ``Sidecar`` plus the progress runtime, as ``attach`` wires it but with ``FakeReader``."""

    def __init__(self, sidecar: Sidecar, reader: FakeReader, registry: CollectorRegistry) -> None:
        self.sidecar, self.reader, self.registry = sidecar, reader, registry
        http = sidecar._http
        assert http is not None
        from app.connect.client import ConnectClient

        rules = Rules.from_settings(sidecar.settings, sidecar.answers.identity)
        self.runtime: ProgressRuntime = build(
            sidecar.settings,
            ConnectClient(http, sidecar.settings),
            rules,
            sidecar.clock,
            lambda: sidecar.answers.state,
            reader,
            registry,
        )
        sidecar.answers.progress = self.runtime

    async def cycle(self, seconds: float = 30.0) -> None:
        """Advance the clock, poll Connect, read Kafka."""
        self.sidecar.clock.advance(seconds)
        await self.sidecar.poll()
        await self.runtime.loop.cycle()

    def metrics(self) -> str:
        return generate_latest(self.registry).decode()


async def setup(fake: FakeConnect, **overrides: Any) -> tuple[Sidecar, Progress]:
    sidecar = Sidecar(fake, **{**KAFKA, **overrides})
    await sidecar.__aenter__()
    progress = Progress(sidecar, FakeReader(), CollectorRegistry())
    await sidecar.poll()
    return sidecar, progress


def sink(name: str, *tasks: tuple[str, str]) -> dict[str, Any]:
    return status(name, tasks=list(tasks) or [("RUNNING", THIS_WORKER)], kind="sink")


async def stall(progress: Progress, name: str = "orders", seconds: int = 630) -> None:
    """Keep task 0 of ``name`` at committed 100 of 150 for ``seconds``."""
    progress.reader.consume(name, 0, 100, 150)
    for _ in range(seconds // 30 + 1):
        await progress.cycle()


async def test_only_running_sink_tasks_on_this_worker_are_read() -> None:
    fake = FakeConnect()
    fake.add(
        sink("orders", ("RUNNING", THIS_WORKER), ("RUNNING", OTHER_WORKER), ("PAUSED", THIS_WORKER))
    )
    fake.add(status("cdc", tasks=[("RUNNING", THIS_WORKER)], kind="source"))
    fake.add(sink("elsewhere", ("RUNNING", OTHER_WORKER)))
    sidecar, progress = await setup(fake)
    progress.reader.consume("orders", 0, 5, 5)
    await progress.cycle()
    assert progress.reader.calls == [("connect-orders",)]
    assert set(progress.runtime.loop.view.verdicts) == {("orders", 0)}
    section = sidecar.status()["progress"]
    assert section["enabled"] is True
    assert "source connectors' progress is not judged" in section["sources"]
    assert "(1 RUNNING source task(s) here)" in section["sources"]
    assert [t["state"] for t in section["tasks"]] == ["idle"]


async def test_the_kafka_read_runs_off_the_event_loop() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    _, progress = await setup(fake)
    progress.reader.consume("orders", 0, 5, 5)
    await progress.cycle()
    assert progress.reader.threads
    assert all(name.startswith("kafka-progress") for name in progress.reader.threads)


async def test_group_id_override_is_read_and_nothing_else_is_kept() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    config = {
        "connector.class": "x.Sink",
        "consumer.override.group.id": "orders-team-group",
        "connection.password": SECRET,
    }
    fake.canned["/connectors/orders/config"] = Canned(200, json.dumps(config).encode())
    sidecar, progress = await setup(fake)
    progress.reader.consume("orders", 0, 5, 9, group="orders-team-group")
    await progress.cycle()
    assert progress.reader.calls == [("orders-team-group",)]
    page = json.dumps(sidecar.status())
    assert "orders-team-group" in page
    assert SECRET not in page
    assert SECRET not in progress.metrics()


async def test_stalled_task_fails_ready_with_details_and_recovers() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar, progress = await setup(fake)
    await stall(progress, seconds=570)
    assert sidecar.ready()[0] == 200
    await progress.cycle()
    code, body = sidecar.ready()
    assert code == 503
    assert codes(body) == ["task_stalled"]
    reason = body["reasons"][0]
    assert (reason["connector"], reason["task"], reason["worker_id"]) == ("orders", 0, THIS_WORKER)
    assert "50 records waiting" in reason["message"]
    assert "orders-t-0 (50)" in reason["message"]
    assert "stall window 600s" in reason["message"]
    assert reason["since"].endswith("Z")
    assert body["counts"]["progress_stalled"] == 1
    # /live is untouched without LIVE_FAIL_ON_STALL
    assert sidecar.live()[0] == 200
    # it commits again: ready at the next read
    progress.reader.consume("orders", 0, 150, 150)
    await progress.cycle()
    assert sidecar.ready()[0] == 200


async def test_live_fails_on_stall_only_when_asked() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar, progress = await setup(fake, live_fail_on_stall=True)
    await stall(progress)
    code, body = sidecar.live()
    assert code == 503
    assert codes(body) == ["task_stalled"]


async def test_excluded_and_longer_window_connectors_are_not_flagged() -> None:
    fake = FakeConnect()
    for name in ("orders", "s3-archive", "legacy"):
        fake.add(sink(name))
    sidecar, progress = await setup(
        fake, stall_windows=("s3-*=3600",), progress_exclude=("legacy",)
    )
    for name in ("orders", "s3-archive", "legacy"):
        progress.reader.consume(name, 0, 100, 150)
    for _ in range(22):
        await progress.cycle()
    code, body = sidecar.ready()
    assert code == 503
    assert [r["connector"] for r in body["reasons"]] == ["orders"]
    states = {(t["connector"], t["state"]) for t in sidecar.status()["progress"]["tasks"]}
    assert states == {("orders", "stalled"), ("s3-archive", "ok")}


async def test_not_consuming_after_grace() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar, progress = await setup(fake, not_consuming_grace=60.0)
    progress.reader.consume("orders", 0, 100, 150, member=False)
    await progress.cycle()
    await progress.cycle()
    assert sidecar.ready()[0] == 200
    await progress.cycle()
    code, body = sidecar.ready()
    assert code == 503
    assert codes(body) == ["task_not_consuming"]
    assert "connect-orders" in body["reasons"][0]["message"]
    progress.reader.consume("orders", 0, 100, 150, member_id="m2")
    await progress.cycle()
    assert sidecar.ready()[0] == 200


async def test_kafka_unreachable_never_fails_ready_but_shows() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar, progress = await setup(fake)
    await stall(progress)
    assert sidecar.ready()[0] == 503
    progress.reader.down = "authentication failed"
    await progress.cycle()
    code, body = sidecar.ready()
    assert code == 200, body
    section = sidecar.status()["progress"]
    assert section["kafka"]["up"] is False
    assert "authentication failed" in section["kafka"]["error"]
    assert section["tasks"][0]["state"] == "unknown"
    text = progress.metrics()
    assert "connect_probe_kafka_up 0.0" in text
    assert 'kafka_connect_task_progress{connector="orders",state="unknown",task="0"} 1.0' in text


async def test_metrics_per_task_never_per_partition() -> None:
    fake = FakeConnect()
    fake.add(sink("orders", ("RUNNING", THIS_WORKER), ("RUNNING", THIS_WORKER)))
    _, progress = await setup(fake)
    progress.reader.consume("orders", 0, 100, 150)
    progress.reader.consume("orders", 1, 7, 7)
    await progress.cycle()
    text = progress.metrics()
    assert 'kafka_connect_task_lag{connector="orders",task="0"} 50.0' in text
    assert 'kafka_connect_task_lag{connector="orders",task="1"} 0.0' in text
    assert 'kafka_connect_task_progress{connector="orders",state="idle",task="1"} 1.0' in text
    assert text.count("kafka_connect_task_progress{") == 12  # 2 tasks x 6 states
    assert "partition=" not in text
    assert "connect_probe_kafka_up 1.0" in text
    assert "connect_probe_progress_read_duration_seconds_count 1.0" in text


async def test_auto_restart_stalled_uses_the_restart_backoff() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar, progress = await setup(
        fake,
        auto_restart_stalled=True,
        auto_restart_backoff_unit=600.0,
        auto_restart_backoff_max=3600.0,
    )
    await stall(progress)
    assert fake.posts == ["/connectors/orders/tasks/0/restart"]
    code, body = sidecar.ready()
    assert code == 503
    assert "restart attempt 2 scheduled at" in body["reasons"][0]["message"]
    section = sidecar.status()["progress"]["auto_restart_stalled"]
    assert section["enabled"] is True
    assert section["connectors"][0]["attempts"] == 1
    assert 'connect_probe_stall_restarts_total{connector="orders",result="restarted"} 1.0' in (
        progress.metrics()
    )
    # still stalled (same consumer): the next attempt waits for the backoff (2 units)
    for _ in range(10):
        await progress.cycle()
    assert fake.posts == ["/connectors/orders/tasks/0/restart"]


async def test_no_restart_without_the_setting() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar, progress = await setup(fake)
    await stall(progress)
    assert fake.posts == []
    assert sidecar.status()["progress"]["auto_restart_stalled"] == {"enabled": False}


async def test_disabled_status_section() -> None:
    fake = FakeConnect()
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        section = sidecar.status()["progress"]
    assert section["enabled"] is False
    assert "source connectors' progress is not judged" in section["note"]


def test_settings_defaults() -> None:
    from app.settings import Settings

    settings = Settings()
    assert settings.kafka_bootstrap_servers is None
    assert (settings.progress_interval, settings.allowed_lag, settings.stall_window) == (30, 0, 600)
    assert (settings.live_fail_on_stall, settings.auto_restart_stalled) == (False, False)


def test_the_password_never_shows(tmp_path: Path) -> None:
    from app.progress.kafka import client_config
    from app.settings import Settings

    secret = tmp_path / "pw"
    secret.write_text(SECRET + "\n")
    settings = Settings(
        kafka_bootstrap_servers="k:9092",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="scram-sha-256",
        kafka_username="probe",
        kafka_password_file=secret,
    )
    assert client_config(settings)["sasl.password"] == SECRET
    assert client_config(settings)["sasl.mechanism"] == "SCRAM-SHA-256"
    assert SECRET not in json.dumps(settings.public_view())
    assert SECRET not in repr(settings)


LAZY = """
import sys, httpx
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings
extra = dict(kafka_bootstrap_servers=sys.argv[1]) if len(sys.argv) > 1 else {}
transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
settings = Settings(worker_id="10.0.0.1:8083", **extra)
with TestClient(create_app(settings, transport=transport)) as client:
    client.get("/ready")
    section = client.get("/status").json()["progress"]
loaded = [name for name in ("confluent_kafka", "app.progress.wiring") if name in sys.modules]
print(section["enabled"], ",".join(loaded) or "-")
"""


@pytest.mark.process  # a fresh interpreter, so nothing is imported already
@pytest.mark.parametrize(
    ("args", "expected"),
    # Enabled: librdkafka is loaded in the Kafka client's own process only (app/progress/isolated).
    [((), "False -"), (("127.0.0.1:1",), "True app.progress.wiring")],
)
def test_the_kafka_client_is_imported_only_when_enabled(
    args: tuple[str, ...], expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LAZY, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


async def test_progress_alert_rules_reference_series_that_exist() -> None:
    from tests.test_metrics import PROGRESS_SERIES, TARGET_LABELS, Scrape, rules, selectors

    fake = FakeConnect()
    for name in ("stuck", "gone", "late"):
        fake.add(sink(name))
    _, progress = await setup(fake, not_consuming_grace=0.0)
    progress.reader.consume("stuck", 0, 100, 150)
    progress.reader.consume("gone", 0, 100, 150, member=False)
    for i in range(22):
        progress.reader.consume("late", 0, 10 * i, 30 * i + 50)
        await progress.cycle()
    progress.reader.down = "refused"
    await progress.cycle()
    scrape = Scrape(progress.metrics())
    progress.reader.down = None
    await progress.cycle()
    scrape_up = Scrape(progress.metrics())
    checked = 0
    for rule in rules():
        for name, labels in selectors(rule["expr"]):
            if name not in PROGRESS_SERIES:
                continue
            checked += 1
            found = scrape.series(name, **labels) or scrape_up.series(name, **labels)
            assert found, f"{rule['alert']}: no series {name}{labels}"
            exported = set().union(*(s.keys() for s in found))
            used = set(re.findall(r"\$labels\.(\w+)", str(rule.get("annotations", {}))))
            assert used <= exported | TARGET_LABELS, f"{rule['alert']}: unknown {used - exported}"
    assert checked >= 4


class HangingReader(FakeReader):
    """A Kafka client stuck inside a call until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = 0

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        self.entered += 1
        self.release.wait(10)
        return super().read(groups, timeout)


async def test_a_hung_kafka_read_never_delays_probes_and_reads_as_unknown() -> None:
    import asyncio

    fake = FakeConnect()
    fake.add(sink("orders"))
    sidecar = Sidecar(fake, **{**KAFKA, "progress_interval": 2.0})
    await sidecar.__aenter__()
    reader = HangingReader()
    progress = Progress(sidecar, reader, CollectorRegistry())
    progress.runtime.loop.read_slack = 0.2
    await sidecar.poll()
    try:
        cycle = asyncio.create_task(progress.runtime.loop.cycle())
        await asyncio.sleep(0.05)
        assert not cycle.done()
        assert sidecar.ready()[0] == 200  # answered while the read hangs
        view = await cycle
        assert view.verdicts[("orders", 0)].state == "unknown"
        assert view.kafka_up is False
        assert "took longer than 1.2s" in (view.failure or "")
        # the thread is still stuck: the next read is skipped, not queued behind it
        view = await progress.runtime.loop.cycle()
        assert "has not finished" in (view.failure or "")
        assert reader.entered == 1
        assert sidecar.ready()[0] == 200
    finally:
        reader.release.set()
        progress.runtime.loop.close()


async def test_unreadable_config_leaves_the_group_unknown_and_the_task_unknown() -> None:
    fake = FakeConnect()
    fake.add(sink("orders"))
    fake.canned["/connectors/orders/config"] = Canned(500, b'{"error_code":500,"message":"x"}')
    sidecar, progress = await setup(fake, not_consuming_grace=0.0)
    await progress.cycle()
    assert progress.reader.calls == []
    (task,) = sidecar.status()["progress"]["tasks"]
    assert task["state"] == "unknown"
    assert "group id is not known yet" in task["detail"]
    assert sidecar.ready()[0] == 200
    del fake.canned["/connectors/orders/config"]
    progress.reader.consume("orders", 0, 1, 1)
    await progress.cycle()
    assert progress.reader.calls == [("connect-orders",)]


def test_tls_and_mutual_tls_settings_reach_the_client(tmp_path: Path) -> None:
    from app.progress.kafka import client_config
    from app.settings import Settings

    pem = tmp_path / "x.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings(
        kafka_bootstrap_servers="k:9093",
        kafka_security_protocol="ssl",
        kafka_ca_file=pem,
        kafka_cert_file=pem,
        kafka_key_file=pem,
    )
    config = client_config(settings)
    assert config["security.protocol"] == "SSL"
    assert config["ssl.ca.location"] == str(pem)
    assert config["ssl.certificate.location"] == str(pem)
    assert config["ssl.key.location"] == str(pem)
    assert "sasl.password" not in config
