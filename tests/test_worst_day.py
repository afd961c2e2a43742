"""The sidecar on its worker's worst day: mass failure, odd entries, flapping, its own bugs."""

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.cli import main
from app.connect.client import ConnectClient, ConnectUnreachable, build_http_client
from app.connect.decoding import EXPOSED_TRACE_CHARS, TraceKeeper
from app.connect.models import ConnectorStatus, InstanceStatus, TaskStatus
from app.memory import MiB, container_memory_limit, envelope_cap, expected_peak, response_cap
from app.poller import Poller
from app.pollstate import PollState
from app.serving import httpdate
from app.settings import Settings
from app.tracking import Change
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import OTHER_WORKER, THIS_WORKER, status
from tools.fakeconnect.model import Canned, FakeConnect
from tools.sidecar import Sidecar, codes

MALFORMED_NULL_WORKER = {"connector": {"state": "RUNNING", "worker_id": None}, "tasks": []}


def listing(entries: dict[str, Any]) -> Canned:
    """``GET /connectors?expand=status`` with these raw status entries."""
    return Canned(200, json.dumps({name: {"status": e} for name, e in entries.items()}).encode())


def entry(name: str, state: str = "RUNNING", worker: str = THIS_WORKER) -> dict[str, Any]:
    body = status(name, state, worker, tasks=[(state, worker)])
    del body["name"]
    return body


# --- one odd entry is that entry's problem ----------------------------------------------------
@pytest.mark.anyio
async def test_an_entry_nobody_owns_is_counted_and_the_rest_judged_normally() -> None:
    fake = FakeConnect(
        canned={
            "/connectors": listing(
                {"good": entry("good"), "odd": MALFORMED_NULL_WORKER, "bad": entry("bad", "FAILED")}
            )
        }
    )
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["connector_state", "task_state"]  # "bad", judged as usual
        assert {reason["connector"] for reason in body["reasons"]} == {"bad"}
        page = sidecar.status()
        assert page["malformed"]["count"] == 1
        assert page["malformed"]["entries"]["odd"]["worker_ids"] == []
        assert "Expected `str`, got `null`" in page["malformed"]["entries"]["odd"]["error"]
        assert page["connect"]["connectors_total"] == 3


@pytest.mark.anyio
async def test_a_malformed_entry_of_this_worker_fails_readiness_as_its_own_reason() -> None:
    odd = {
        "connector": {"state": "RUNNING", "worker_id": THIS_WORKER},
        "tasks": [{"id": "0", "state": "RUNNING", "worker_id": THIS_WORKER}],
    }
    fake = FakeConnect(canned={"/connectors": listing({"good": entry("good"), "odd": odd})})
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["status_malformed"]
        assert body["reasons"][0]["connector"] == "odd"
        assert body["reasons"][0]["worker_id"] == THIS_WORKER
        assert "Expected `int`, got `str`" in body["reasons"][0]["message"]
        assert sidecar.live()[0] == 200


@pytest.mark.anyio
async def test_a_malformed_entry_of_another_worker_does_not_fail_this_one() -> None:
    odd = {"connector": {"state": "RUNNING", "worker_id": OTHER_WORKER}, "tasks": {"0": {}}}
    fake = FakeConnect(canned={"/connectors": listing({"good": entry("good"), "odd": odd})})
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        assert sidecar.status()["malformed"]["entries"]["odd"]["worker_ids"] == [OTHER_WORKER]
    async with Sidecar(fake, scope="cluster") as cluster_wide:
        await cluster_wide.poll()
        code, body = cluster_wide.ready()
        assert (code, codes(body)) == (503, ["status_malformed"])
    async with Sidecar(fake, scope="cluster", max_unhealthy="1") as tolerant:
        await tolerant.poll()
        assert tolerant.ready()[0] == 200


@pytest.mark.anyio
async def test_a_required_connector_with_a_malformed_entry_is_not_missing() -> None:
    fake = FakeConnect(canned={"/connectors": listing({"odd": MALFORMED_NULL_WORKER})})
    clock = FakeClock()
    async with Sidecar(fake, clock, required_connectors="odd", transient_grace=0) as sidecar:
        await sidecar.poll()
        clock.advance(1)
        assert sidecar.ready()[0] == 200


@pytest.mark.anyio
async def test_malformed_entries_from_pre_2_3_workers_too() -> None:
    fake = FakeConnect(legacy=True)
    fake.add(status("good"))
    fake.add(status("odd"))
    fake.canned["/connectors/odd/status"] = Canned(200, b'{"name": "odd", "connector": 7}')
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        assert sidecar.status()["malformed"]["count"] == 1


# --- memory: only the first line of a trace is kept -----------------------------------------
def long_trace(tail: str) -> str:
    return "org.example.SQLException: db down\n" + "\tat a.b.C.d(C.java:1)\n" * 500 + tail


@pytest.mark.anyio
async def test_traces_are_kept_as_their_first_line_unless_exposed() -> None:
    fake = FakeConnect()
    fake.add(status("orders", tasks=[("FAILED", THIS_WORKER)]))
    fake.connectors["orders"]["tasks"][0]["trace"] = long_trace("poll 1")
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        kept = sidecar.poller.state.tracked["orders"].status.tasks[0].trace
        assert kept == "org.example.SQLException: db down"
        generation = sidecar.poller.state.generation
        fake.connectors["orders"]["tasks"][0]["trace"] = long_trace("poll 2")
        await sidecar.poll()  # a different answer that says the same: nothing judged again
        assert sidecar.poller.state.generation == generation
    async with Sidecar(fake, expose_traces=True) as exposing:
        await exposing.poll()
        kept = exposing.poller.state.tracked["orders"].status.tasks[0].trace
        assert kept is not None
        assert len(kept) == EXPOSED_TRACE_CHARS
        assert kept.startswith("org.example.SQLException: db down\n\tat")


def test_exposed_traces_stop_at_the_budget_per_poll() -> None:
    keeper = TraceKeeper(expose=True)
    task = TaskStatus(0, "FAILED", THIS_WORKER, long_trace("x"))
    status_with = ConnectorStatus(InstanceStatus("RUNNING", THIS_WORKER), (task,) * 8)
    lengths: list[int] = []
    for _ in range(600):  # 600 x 8 x 4 KiB = 19 MiB of traces asked for, 16 MiB allowed
        lengths.extend(len(t.trace or "") for t in keeper.slim(status_with).tasks)
    assert lengths[0] == EXPOSED_TRACE_CHARS
    assert lengths[-1] == len("org.example.SQLException: db down")
    exposed = [length for length in lengths if length == EXPOSED_TRACE_CHARS]
    assert 16 * MiB <= sum(exposed) < 16 * MiB + EXPOSED_TRACE_CHARS


# --- memory: the cap follows the container's limit ------------------------------------------
def test_the_cgroup_limit_is_read_from_v2_or_v1(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    assert container_memory_limit((v2, v1)) is None
    v2.write_text("max\n")
    assert container_memory_limit((v2, v1)) is None
    v2.unlink()
    v1.write_text("9223372036854771712\n")  # v1 "unlimited"
    assert container_memory_limit((v2, v1)) is None
    v1.write_text(f"{256 * MiB}\n")
    assert container_memory_limit((v2, v1)) == 256 * MiB


def test_the_derived_cap_keeps_the_expected_peak_within_three_quarters_of_the_limit() -> None:
    assert envelope_cap(None) == 64 * MiB
    assert envelope_cap(256 * MiB) == 64 * MiB
    for limit in (128 * MiB, 160 * MiB, 192 * MiB, 224 * MiB, 256 * MiB):
        assert expected_peak(envelope_cap(limit)) <= 0.75 * limit
    assert envelope_cap(64 * MiB) == MiB  # too small to be safe: the smallest cap, and a note
    cap, note = response_cap(None, 192 * MiB)
    assert cap == envelope_cap(192 * MiB)
    assert "derived from the container's 192 MiB memory limit" in note
    cap, note = response_cap(64 * MiB, 128 * MiB)
    assert cap == 64 * MiB
    assert "WARNING" in note


# --- logs stay readable on a mass change ------------------------------------------------------
@pytest.mark.anyio
async def test_a_mass_failure_logs_one_summary_and_the_first_few(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeConnect()
    for index in range(500):
        fake.add(status(f"sink-{index:03d}", tasks=[("RUNNING", THIS_WORKER)] * 3))
    caplog.set_level(logging.INFO, logger="app.changes")
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        assert [r for r in caplog.records if r.name == "app.changes"] == []
        for index in range(500):
            for task in range(3):
                fake.set_task(f"sink-{index:03d}", task, "FAILED")
        await sidecar.poll()
    lines = [r.getMessage() for r in caplog.records if r.name == "app.changes"]
    assert len(lines) == 6
    assert lines[0].startswith("1500 connector/task state changes in one poll: 1500 RUNNING→FAILED")
    assert lines[1].startswith("sink-000 task 0 RUNNING→FAILED on 10.0.0.1:8083")


# --- settings checked together ------------------------------------------------------------------
def test_a_poll_that_can_outlive_max_age_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"CONNECT_PROBE_MAX_AGE \(30\) must be greater"):
        Settings(poll_interval=20, timeout=11, max_age=30)
    Settings(poll_interval=18, timeout=11, max_age=30)


def test_the_cli_names_max_age_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--poll-interval", "20", "--timeout", "11", "--max-age", "30"]) == 2
    err = capsys.readouterr().err
    assert "CONNECT_PROBE_MAX_AGE (30) must be greater than" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"connect_url": "http://connect:8083", "verify": False}, "apply to https only"),
        ({"connect_url": "http://localhost:18083"}, "would poll itself"),
        ({"connect_url": "http://127.0.0.1:9000", "port": 9000}, "would poll itself"),
    ],
)
def test_combinations_that_cannot_work_are_refused(values: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Settings(**values)


# --- the poll loop is supervised --------------------------------------------------------------
@pytest.mark.anyio
async def test_a_failing_observer_is_logged_once_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[int] = []

    def broken(state: PollState, changes: list[Change]) -> None:
        raise RuntimeError("observer bug")

    def counting(state: PollState, changes: list[Change]) -> None:
        seen.append(state.polls)

    fake = FakeConnect()
    fake.add(status("orders"))
    settings = Settings()
    async with build_http_client(settings, fake.transport()) as http:
        poller = Poller(
            ConnectClient(http, settings),
            FakeClock(),
            poll_interval=5,
            health_recheck_interval=300,
            observers=(broken, counting),
        )
        for _ in range(3):
            state = await poller.poll_once()
            assert state.failure is None
    assert seen == [1, 2, 3]
    failures = [r for r in caplog.records if "a poll observer failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None


@pytest.mark.anyio
async def test_the_poll_loop_restarts_after_a_crash_and_healthz_says_so() -> None:
    fake = FakeConnect()
    fake.add(status("orders"))
    clock = FakeClock()
    settings = Settings()
    crashes = 2
    async with build_http_client(settings, fake.transport()) as http:
        poller = Poller(
            ConnectClient(http, settings), clock, poll_interval=5, health_recheck_interval=300
        )
        real_cycle = poller.cycle

        async def flaky_cycle() -> PollState:
            nonlocal crashes
            if crashes:
                crashes -= 1
                raise RuntimeError("bug in the loop")
            return await real_cycle()

        poller.cycle = flaky_cycle  # type: ignore[method-assign]
        task = asyncio.create_task(poller.run())
        for _ in range(50):
            await asyncio.sleep(0)
            if poller.state.polls >= 2:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert poller.state.polls >= 2
    assert poller.crash is not None
    assert poller.crash.count == 2
    assert poller.crash.error == "RuntimeError: bug in the loop"
    assert clock.sleeps[:2] == [1.0, 2.0]  # backoff after each crash, then the poll interval


# --- flapping, pools and counters ---------------------------------------------------------------
@pytest.mark.anyio
async def test_a_worker_flapping_between_refused_and_500_is_still_judged() -> None:
    fake = FakeConnect()
    fake.add(status("orders"))
    clock = FakeClock()
    async with Sidecar(fake, clock, startup_grace=300, live_grace=60) as sidecar:
        await sidecar.poll()
        clock.advance(1000)
        await sidecar.poll()
        failed_live_at = None
        for step in range(200):  # 1000 s of refused / 500 / refused / 500 ...
            clock.advance(5)
            fake.down = step % 2 == 0
            fake.canned["/connectors"] = Canned(500, b'{"error_code":500,"message":"boom"}')
            await sidecar.poll()
            if sidecar.live()[0] == 503 and failed_live_at is None:
                failed_live_at = step
        # One STARTUP_GRACE (the first time it went away), then LIVE_GRACE, then judged.
        assert failed_live_at is not None
        assert 5 * failed_live_at <= 300 + 60 + 10
        assert sidecar.live()[0] == 503


@pytest.mark.anyio
async def test_a_401_does_not_cut_the_other_requests_short() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connectors":
            return httpx.Response(401, text="User cannot access the resource.")
        await asyncio.sleep(0.02)  # /health and / still in flight when /connectors fails
        return httpx.Response(200, json={"status": "healthy", "message": "ok", "version": "4.0"})

    settings = Settings()
    renewed: list[httpx.AsyncClient] = []

    def renew() -> httpx.AsyncClient:
        renewed.append(build_http_client(settings, httpx.MockTransport(handler)))
        return renewed[-1]

    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        client = ConnectClient(http, settings, renew=renew)
        poller = Poller(client, FakeClock(), poll_interval=5, health_recheck_interval=300)
        for _ in range(3):
            state = await poller.poll_once()
            assert state.failure is not None
            assert state.failure.code == "connect_auth"
        assert client.renewals == 0
        await client.aclose()


@pytest.mark.anyio
async def test_restart_counters_end_with_their_connector() -> None:
    fake = FakeConnect()
    fake.add(status("orders", tasks=[("FAILED", THIS_WORKER)]))
    async with Sidecar(fake, auto_restart=True) as sidecar:
        await sidecar.poller.cycle()
        restarter = sidecar.core.restarter
        assert restarter is not None
        assert any(name == "orders" for name, _ in restarter.counts())
        del fake.connectors["orders"]
        await sidecar.poller.cycle()
        assert dict(restarter.counts()) == {}


# --- HTTP: a Date header without a timer --------------------------------------------------------
def test_the_date_header_is_computed_once_per_second(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_790_000_000.2]
    monkeypatch.setattr(time, "time", lambda: now[0])
    first = httpdate.date_headers()
    assert first == [(b"date", b"Mon, 21 Sep 2026 14:13:20 GMT")]
    now[0] += 0.7
    assert httpdate.date_headers() is first
    now[0] += 0.2
    assert httpdate.date_headers() == [(b"date", b"Mon, 21 Sep 2026 14:13:21 GMT")]


@pytest.mark.anyio
async def test_a_get_on_a_connection_the_server_just_closed_is_sent_again_once() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"version": "4.1.0"})

    settings = Settings()
    async with build_http_client(settings, httpx.MockTransport(handler)) as http:
        raw = await ConnectClient(http, settings).get("/")
    assert raw.status_code == 200
    assert calls == ["/", "/"]

    def always_closed(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    calls.clear()
    async with build_http_client(settings, httpx.MockTransport(always_closed)) as http:
        client = ConnectClient(http, settings)
        with pytest.raises(ConnectUnreachable, match="Server disconnected"):
            await client.get("/")
        with pytest.raises(ConnectUnreachable):
            await client.post("/connectors/x/restart")  # never repeated: not idempotent
    assert calls == ["/", "/", "/connectors/x/restart"]
