"""Auto-restart (issue 8): only the right restart POSTs, at the right times, from the right worker.

A ``FakeConnect`` records every request; a ``FakeClock`` moves by hand, so the backoff schedule is
checked to the second without sleeping. ``poller.cycle()`` is what the serving loop runs: a poll,
then the restarter.
"""

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.connect.client import supports_restart_plan
from app.metrics import Metrics
from app.restart import Restarter, backoff_delay
from app.settings import Settings
from app.verdict import iso
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import OTHER_WORKER, THIS_WORKER, status
from tools.fakeconnect.model import Canned, FakeConnect
from tools.fakeconnect.threaded import serve_fake
from tools.procs import run_sidecar, wait_for_status
from tools.sidecar import Sidecar

pytestmark = pytest.mark.anyio

PLAN = "?includeTasks=true&onlyFailed=true"
# Seconds as units keep the arithmetic readable: waits 0, 2, 6, 12, 20, 30... seconds.
FAST: dict[str, Any] = {
    "auto_restart": True,
    "auto_restart_backoff_unit": 1.0,
    "auto_restart_backoff_max": 60.0,
}


def restarter(sidecar: Sidecar) -> Restarter:
    assert sidecar.core.restarter is not None
    return sidecar.core.restarter


def failed_task(name: str = "orders", worker: str = THIS_WORKER) -> dict[str, Any]:
    """A RUNNING connector on this worker whose only task is FAILED on ``worker``."""
    return status(name, tasks=[("FAILED", worker)])


def entry(sidecar: Sidecar, name: str) -> dict[str, Any]:
    section = sidecar.status()["auto_restart"]
    found = [item for item in section["connectors"] if item["name"] == name]
    assert len(found) == 1, section
    result: dict[str, Any] = found[0]
    return result


def when(clock: FakeClock, monotonic: float) -> str:
    return iso(monotonic, clock.wall() - clock.monotonic())


async def attempt_times(sidecar: Sidecar, seconds: int) -> list[float]:
    """Cycle once a second for ``seconds``; the clock offsets at which a restart POST went out."""
    start = sidecar.clock.monotonic()
    times = []
    for _ in range(seconds + 1):
        before = len(sidecar.fake.posts)
        await sidecar.poller.cycle()
        if len(sidecar.fake.posts) > before:
            times.append(sidecar.clock.monotonic() - start)
        sidecar.clock.advance(1.0)
    return times


# --- settings and the schedule ----------------------------------------------------------------
def test_defaults_are_off_and_strimzis_schedule() -> None:
    settings = Settings()
    assert settings.auto_restart is False
    assert settings.auto_restart_max is None
    unit, cap = settings.auto_restart_backoff_unit, settings.auto_restart_backoff_max
    minutes = [backoff_delay(n, unit, cap) / 60 for n in range(11)]
    assert minutes == [0, 2, 6, 12, 20, 30, 42, 56, 60, 60, 60]


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECT_PROBE_AUTO_RESTART", "true")
    monkeypatch.setenv("CONNECT_PROBE_AUTO_RESTART_BACKOFF_UNIT", "30")
    monkeypatch.setenv("CONNECT_PROBE_AUTO_RESTART_BACKOFF_MAX", "600")
    monkeypatch.setenv("CONNECT_PROBE_AUTO_RESTART_MAX", "5")
    settings = Settings()
    assert (settings.auto_restart, settings.auto_restart_backoff_unit) == (True, 30.0)
    assert (settings.auto_restart_backoff_max, settings.auto_restart_max) == (600.0, 5)
    monkeypatch.setenv("CONNECT_PROBE_AUTO_RESTART_MAX", "unlimited")
    assert Settings().auto_restart_max is None
    monkeypatch.setenv("CONNECT_PROBE_AUTO_RESTART_MAX", "0")
    with pytest.raises(ValueError, match="auto_restart_max"):
        Settings()


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.9.0", True),
        ("3.0.0", True),
        ("4.1.0", True),
        ("2.8.2", False),
        ("0.10.0.1-cp1", False),
        ("7.4.0-ccs", True),  # Confluent Platform 7.4 = Apache Kafka 3.4
        ("6.2.1-ccs", False),  # CP 6.2 = AK 2.8
        ("8.1.6-0-ccs", True),
        ("", False),
        (None, False),
        ("garbage", False),
    ],
)
def test_which_versions_get_the_kip745_form(version: str | None, expected: bool) -> None:
    assert supports_restart_plan(version) is expected


# --- when it is off -----------------------------------------------------------------------------
async def test_off_sends_nothing_but_gets() -> None:
    fake = FakeConnect()
    fake.add(status("broken", state="FAILED", tasks=[("FAILED", THIS_WORKER)]))
    clock = FakeClock()
    async with Sidecar(fake, clock) as sidecar:
        assert sidecar.core.restarter is None
        for _ in range(5):
            await sidecar.poller.cycle()
            clock.advance(120)
        code, body = sidecar.ready()
        assert code == 503
        assert "restart" not in body["reasons"][0]["message"]
        assert sidecar.status()["auto_restart"] == {"enabled": False}
    assert fake.posts == []
    assert {request.method for request in fake.requests} == {"GET"}


async def test_a_one_shot_poll_never_restarts() -> None:
    """``connect-probe check`` runs ``poll_once`` only: reading, never acting."""
    fake = FakeConnect()
    fake.add(failed_task())
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poll()
    assert fake.posts == []


# --- what is restarted, and how -----------------------------------------------------------------
async def test_failed_task_here_is_restarted_with_the_kip745_call() -> None:
    fake = FakeConnect(restart_heals=True)
    fake.add(failed_task("orders"))
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
        assert fake.posts == [f"/connectors/orders/restart{PLAN}"]
        sidecar.clock.advance(1)
        await sidecar.poller.cycle()
        assert sidecar.ready()[0] == 200
    assert fake.posts == [f"/connectors/orders/restart{PLAN}"]


async def test_failed_connector_instance_here_is_restarted() -> None:
    fake = FakeConnect()
    fake.add(status("source", state="FAILED", tasks=[]))
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
    assert fake.posts == [f"/connectors/source/restart{PLAN}"]


async def test_names_are_url_encoded() -> None:
    fake = FakeConnect()
    fake.add(failed_task("a/b c?d"))
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
        fake.version = "2.8.0"  # the version is read again after a failed poll
        fake.down = True
        await sidecar.poller.cycle()
        fake.down = False
        sidecar.clock.advance(2)
        await sidecar.poller.cycle()
    assert fake.posts == [
        f"/connectors/a%2Fb%20c%3Fd/restart{PLAN}",
        "/connectors/a%2Fb%20c%3Fd/tasks/0/restart",
    ]


@pytest.mark.parametrize("scope", ["worker", "cluster"])
async def test_objects_on_other_workers_are_never_restarted(scope: str) -> None:
    fake = FakeConnect()
    fake.add(status("theirs", worker=OTHER_WORKER, tasks=[("FAILED", OTHER_WORKER)]))
    fake.add(status("their-connector", state="FAILED", worker=OTHER_WORKER, tasks=[]))
    async with Sidecar(fake, scope=scope, **FAST) as sidecar:
        for _ in range(3):
            await sidecar.poller.cycle()
            sidecar.clock.advance(100)
        code, body = sidecar.ready()
        if scope == "cluster":  # judged by this sidecar's readiness, restarted by theirs
            assert code == 503
            assert all("restart" not in reason["message"] for reason in body["reasons"])
        assert sidecar.status()["auto_restart"]["connectors"] == []
    assert fake.posts == []


async def test_a_connector_failing_on_two_workers_gets_only_our_task_restarted() -> None:
    """The KIP-745 call is connector-wide: it would restart the other worker's task too."""
    fake = FakeConnect()
    fake.add(status("split", tasks=[("FAILED", THIS_WORKER), ("FAILED", OTHER_WORKER)]))
    fake.add(
        status(
            "split-conn", state="FAILED", tasks=[("RUNNING", OTHER_WORKER), ("FAILED", THIS_WORKER)]
        )
    )
    async with Sidecar(fake, scope="cluster", **FAST) as sidecar:
        await sidecar.poller.cycle()
    assert fake.posts == [
        "/connectors/split/tasks/0/restart",
        f"/connectors/split-conn/restart{PLAN}",  # every FAILED object of it is ours
    ]


async def test_include_and_exclude_apply() -> None:
    fake = FakeConnect()
    for name in ("orders-sink", "orders-tmp", "billing-sink"):
        fake.add(failed_task(name))
    async with Sidecar(fake, include=("orders-*",), exclude=("*-tmp",), **FAST) as sidecar:
        await sidecar.poller.cycle()
    assert fake.posts == [f"/connectors/orders-sink/restart{PLAN}"]


@pytest.mark.parametrize(
    ("connector_state", "task_state"),
    [
        ("PAUSED", "FAILED"),  # a paused connector is left alone, FAILED tasks included
        ("STOPPED", "FAILED"),
        ("RESTARTING", "FAILED"),  # somebody's restart is already under way
        ("RUNNING", "PAUSED"),
        ("RUNNING", "UNASSIGNED"),
        ("RUNNING", "RESTARTING"),
        ("UNASSIGNED", "RUNNING"),
        ("RUNNING", "RUNNING"),
    ],
)
async def test_never_touches_other_states(connector_state: str, task_state: str) -> None:
    fake = FakeConnect()
    fake.add(status("c", state=connector_state, tasks=[(task_state, THIS_WORKER)]))
    async with Sidecar(fake, **FAST) as sidecar:
        for _ in range(3):
            await sidecar.poller.cycle()
            sidecar.clock.advance(100)
    assert fake.posts == []


async def test_pre_3_0_workers_get_one_request_per_failed_object() -> None:
    fake = FakeConnect(version="2.8.2")
    fake.add(
        status(
            "legacy",
            state="FAILED",
            tasks=[("RUNNING", THIS_WORKER), ("FAILED", THIS_WORKER), ("FAILED", THIS_WORKER)],
        )
    )
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
    assert fake.posts == [
        "/connectors/legacy/restart",
        "/connectors/legacy/tasks/1/restart",
        "/connectors/legacy/tasks/2/restart",
    ]


async def test_unknown_version_gets_one_request_per_failed_object() -> None:
    fake = FakeConnect()
    fake.add(failed_task("x"))
    fake.canned["/"] = Canned(500, b"{}")  # GET / fails: the version is unknown
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
    assert fake.posts == ["/connectors/x/tasks/0/restart"]


@pytest.mark.parametrize("answer", [404, 405])
async def test_kip745_call_refused_falls_back_and_is_remembered(answer: int) -> None:
    fake = FakeConnect(plan_status=answer)
    fake.add(failed_task("x"))
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
        assert entry(sidecar, "x")["last_result"] == "restarted"
        sidecar.clock.advance(2)
        await sidecar.poller.cycle()
    assert fake.posts == [
        f"/connectors/x/restart{PLAN}",
        "/connectors/x/tasks/0/restart",
        "/connectors/x/tasks/0/restart",  # attempt 2 goes straight to the per-object call
    ]


# --- the backoff ----------------------------------------------------------------------------------
async def test_attempts_follow_the_schedule() -> None:
    fake = FakeConnect()
    fake.add(failed_task())
    async with Sidecar(fake, **{**FAST, "auto_restart_backoff_max": 10.0}) as sidecar:
        times = await attempt_times(sidecar, 50)
    # waits 0, 2, 6, then 12 and 20 capped at 10
    assert times == [0, 2, 8, 18, 28, 38, 48]


async def test_the_default_schedule_in_minutes() -> None:
    fake = FakeConnect()
    fake.add(failed_task())
    clock = FakeClock()
    async with Sidecar(fake, clock, auto_restart=True) as sidecar:
        start = clock.monotonic()
        times = []
        for _ in range(7 * 60):  # 7 hours, one cycle a minute
            before = len(fake.posts)
            await sidecar.poller.cycle()
            if len(fake.posts) > before:
                times.append((clock.monotonic() - start) / 60)
            clock.advance(60)
    assert times == [0, 2, 8, 20, 40, 70, 112, 168, 228, 288, 348, 408]


async def test_readiness_says_when_the_next_attempt_is() -> None:
    fake = FakeConnect()
    fake.add(failed_task("orders"))
    clock = FakeClock()
    async with Sidecar(fake, clock, **FAST) as sidecar:
        await sidecar.poller.cycle()  # attempt 1 at t0
        t0 = clock.monotonic()
        code, body = sidecar.ready()
        assert code == 503
        message = body["reasons"][0]["message"]
        assert message.startswith("task 0 of connector 'orders' is FAILED on worker")
        assert f"restart attempt 2 scheduled at {when(clock, t0 + 2)}" in message
        clock.advance(2)
        await sidecar.poller.cycle()  # attempt 2 at t0 + 2
        message = sidecar.ready()[1]["reasons"][0]["message"]
        assert f"restart attempt 3 scheduled at {when(clock, t0 + 2 + 6)}" in message
        assert "(2 made, last restarted)" in message
        item = entry(sidecar, "orders")
        assert item["attempts"] == 2
        assert item["last_result"] == "restarted"
        assert item["last_result_at"] == when(clock, t0 + 2)
        assert item["next_attempt"] == when(clock, t0 + 8)
        assert item["failed_here"] == ["task 0"]
        assert item["gave_up"] is False
    assert len(fake.posts) == 2


# --- 409, timeouts and other answers --------------------------------------------------------------
async def test_409_is_retried_at_the_next_poll_without_counting() -> None:
    fake = FakeConnect(restart_status=409)
    fake.add(failed_task("x"))
    clock = FakeClock()
    async with Sidecar(fake, clock, **FAST) as sidecar:
        for _ in range(3):
            await sidecar.poller.cycle()
            clock.advance(1)
        assert len(fake.posts) == 3  # one try per poll, none counted
        item = entry(sidecar, "x")
        assert (item["attempts"], item["last_result"]) == (0, "conflict")
        assert "retried at the next poll" in sidecar.ready()[1]["reasons"][0]["message"]
        fake.restart_status = None
        await sidecar.poller.cycle()  # accepted: attempt 1
        t1 = clock.monotonic()
        assert (entry(sidecar, "x")["attempts"], len(fake.posts)) == (1, 4)
        clock.advance(1)
        await sidecar.poller.cycle()  # within the 2 s backoff of attempt 1
        assert len(fake.posts) == 4
        clock.advance(1)
        await sidecar.poller.cycle()
        assert len(fake.posts) == 5
        assert entry(sidecar, "x")["last_result_at"] == when(clock, t1 + 2)
        counts = dict(restarter(sidecar).counts())
    assert counts == {("x", "conflict"): 3, ("x", "restarted"): 2}


async def test_timeout_is_retried_at_the_next_poll_without_counting() -> None:
    fake = FakeConnect(version="2.8.0")
    fake.add(failed_task("x"))
    fake.hang_paths.add("/connectors/x/tasks/0/restart")
    async with Sidecar(fake, timeout=0.05, **FAST) as sidecar:  # the only real wait: 2 x 50 ms
        await sidecar.poller.cycle()
        sidecar.clock.advance(1)
        await sidecar.poller.cycle()
        assert (entry(sidecar, "x")["attempts"], entry(sidecar, "x")["last_result"]) == (
            0,
            "timeout",
        )
        fake.hang_paths.clear()
        sidecar.clock.advance(1)
        await sidecar.poller.cycle()
        assert entry(sidecar, "x")["attempts"] == 1
        counts = dict(restarter(sidecar).counts())
    assert fake.posts == ["/connectors/x/tasks/0/restart"] * 3
    assert counts == {("x", "timeout"): 2, ("x", "restarted"): 1}


async def test_a_server_error_counts_as_an_attempt() -> None:
    fake = FakeConnect(restart_status=500)
    fake.add(failed_task("x"))
    async with Sidecar(fake, **FAST) as sidecar:
        times = await attempt_times(sidecar, 8)
        assert entry(sidecar, "x")["last_result"] == "error"
    assert times == [0, 2, 8]


async def test_nothing_is_sent_while_connects_health_is_bad() -> None:
    fake = FakeConnect(health=(500, {"status": "unhealthy", "message": "stuck"}))
    fake.add(failed_task("x"))
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
        assert fake.posts == []
        assert "herder" in sidecar.status()["auto_restart"]["held"]
        fake.health = (200, {"status": "healthy", "message": "ok"})
        sidecar.clock.advance(1)
        await sidecar.poller.cycle()
    assert fake.posts == [f"/connectors/x/restart{PLAN}"]


async def test_no_restart_after_a_failed_poll() -> None:
    fake = FakeConnect()
    fake.add(failed_task("x"))
    async with Sidecar(fake, **FAST) as sidecar:
        fake.down = True
        await sidecar.poller.cycle()
    assert fake.posts == []


# --- reset and give-up ----------------------------------------------------------------------------
async def test_count_resets_after_staying_healthy_longer_than_the_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.restart")
    fake = FakeConnect(restart_heals=True)
    fake.add(failed_task("x"))
    clock = FakeClock()
    async with Sidecar(fake, clock, **FAST) as sidecar:
        await sidecar.poller.cycle()  # attempt 1 at t=0, heals
        clock.advance(1)
        await sidecar.poller.cycle()  # healthy since t=1
        fake.set_task("x", 0, "FAILED")
        clock.advance(1)
        await sidecar.poller.cycle()  # healthy for 1 s <= 2 s backoff: attempt 2, not a new 1
        assert entry(sidecar, "x")["attempts"] == 2
        clock.advance(1)
        await sidecar.poller.cycle()  # healthy since t=3, backoff after 2 attempts: 6 s
        assert entry(sidecar, "x")["reset_at"] == when(clock, clock.monotonic() + 6)
        clock.advance(6)
        await sidecar.poller.cycle()  # healthy for exactly 6 s: not yet longer than it
        assert entry(sidecar, "x")["attempts"] == 2
        clock.advance(1)
        await sidecar.poller.cycle()  # 7 s > 6 s: forgotten
        assert sidecar.status()["auto_restart"]["connectors"] == []
        fake.set_task("x", 0, "FAILED")
        clock.advance(1)
        await sidecar.poller.cycle()  # a fresh failure: attempt 1 at once
        assert entry(sidecar, "x")["attempts"] == 1
    assert len(fake.posts) == 3
    assert sum("attempt count reset" in r.getMessage() for r in caplog.records) == 1


async def test_gives_up_after_the_maximum_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.restart")
    fake = FakeConnect()
    fake.add(failed_task("x"))
    async with Sidecar(fake, auto_restart_max=2, **FAST) as sidecar:
        times = await attempt_times(sidecar, 60)
        item = entry(sidecar, "x")
        assert (item["attempts"], item["gave_up"], item["last_result"]) == (2, True, "gave_up")
        assert item["next_attempt"] is None
        message = sidecar.ready()[1]["reasons"][0]["message"]
        assert "auto-restart gave up after 2 attempt(s)" in message
        counts = dict(restarter(sidecar).counts())
    assert times == [0, 2]
    give_ups = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert len(give_ups) == 1
    assert give_ups[0].levelno == logging.WARNING
    attempts = [r for r in caplog.records if r.getMessage().startswith("auto-restart: restart")]
    assert len(attempts) == 2
    assert counts == {("x", "restarted"): 2, ("x", "gave_up"): 1}


async def test_a_deleted_connector_is_forgotten() -> None:
    fake = FakeConnect()
    fake.add(failed_task("x"))
    async with Sidecar(fake, **FAST) as sidecar:
        await sidecar.poller.cycle()
        del fake.connectors["x"]
        sidecar.clock.advance(1)
        await sidecar.poller.cycle()
        assert sidecar.status()["auto_restart"]["connectors"] == []
    assert len(fake.posts) == 1


async def test_status_section_describes_the_configuration() -> None:
    fake = FakeConnect()
    async with Sidecar(fake, auto_restart_max=3, **FAST) as sidecar:
        await sidecar.poller.cycle()
        section = sidecar.status()["auto_restart"]
    assert section["enabled"] is True
    assert section["backoff_unit_seconds"] == 1.0
    assert section["backoff_max_seconds"] == 60.0
    assert section["max_attempts"] == 3
    assert section["restart_api"].startswith("KIP-745")
    assert "in memory" in section["state"]


async def test_metrics_count_attempts_by_result() -> None:
    fake = FakeConnect(restart_status=409)
    fake.add(failed_task("x"))
    async with Sidecar(fake, **FAST) as sidecar:
        metrics = Metrics(sidecar.settings, sidecar.clock, lambda: sidecar.core)
        before = (await metrics.render()).decode()
        await sidecar.poller.cycle()
        fake.restart_status = None
        sidecar.clock.advance(1)
        await sidecar.poller.cycle()
        text = (await metrics.render()).decode()
    assert "connect_probe_restarts_total{" not in before
    assert 'connect_probe_restarts_total{connector="x",result="conflict"} 1.0' in text
    assert 'connect_probe_restarts_total{connector="x",result="restarted"} 1.0' in text


async def test_no_restart_metric_when_off() -> None:
    async with Sidecar(FakeConnect()) as sidecar:
        await sidecar.poller.cycle()
        metrics = Metrics(sidecar.settings, sidecar.clock, lambda: sidecar.core)
        assert b"connect_probe_restarts" not in await metrics.render()


# --- the real process against a recording Connect -----------------------------------------------
@pytest.mark.process
def test_real_process_heals_a_failed_task(tmp_path: Path) -> None:
    fake = FakeConnect(restart_heals=True)
    fake.add(failed_task("orders"))
    with serve_fake(fake) as connect_url:
        env = {
            "CONNECT_PROBE_CONNECT_URL": connect_url,
            "CONNECT_PROBE_WORKER_ID": THIS_WORKER,
            "CONNECT_PROBE_POLL_INTERVAL": "0.2",
            "CONNECT_PROBE_AUTO_RESTART": "true",
        }
        with run_sidecar(env, tmp_path) as sidecar:
            assert wait_for_status(f"{sidecar.url}/ready", 200).status_code == 200
            page = httpx.get(f"{sidecar.url}/status").json()["auto_restart"]
        log = sidecar.output()
    assert fake.posts == [f"/connectors/orders/restart{PLAN}"]
    assert page["connectors"][0]["last_result"] == "restarted"
    assert "restart attempt 1 of connector orders: restarted" in log
