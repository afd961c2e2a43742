"""The readiness and liveness rules, scenario by scenario, against a fake Connect and clock."""

import json
from pathlib import Path
from typing import Any

import pytest

from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import OTHER_WORKER, THIS_WORKER, status
from tools.fakeconnect.model import Canned, FakeConnect
from tools.sidecar import Sidecar, codes

pytestmark = pytest.mark.anyio

DATA = Path(__file__).parent / "data"


def load(prefix: str) -> Any:
    """A recorded Connect answer from tests/data by its number prefix, e.g. ``load("04")``."""
    matches = sorted(DATA.glob(f"{prefix}-*.json"))
    assert len(matches) == 1, f"expected one example starting with {prefix}-, got {matches}"
    return json.loads(matches[0].read_text(encoding="utf-8"))


def fake_with(*bodies: dict[str, object]) -> FakeConnect:
    fake = FakeConnect()
    for body in bodies:
        fake.add(dict(body))
    return fake


# --- all good -------------------------------------------------------------------------------
async def test_all_running_is_ready_and_live() -> None:
    fake = fake_with(status("orders-sink", tasks=[("RUNNING", THIS_WORKER)] * 3))
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert (code, body["ok"]) == (200, True)
        assert body["counts"]["in_scope"] == 4
        assert sidecar.live()[0] == 200


async def test_no_connectors_at_all_is_ready() -> None:
    async with Sidecar(FakeConnect()) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200


async def test_not_ready_before_the_first_poll() -> None:
    async with Sidecar(FakeConnect()) as sidecar:
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["no_poll_yet"]
        assert sidecar.live()[0] == 200


# --- task and connector states ----------------------------------------------------------------
async def test_failed_task_on_this_worker_fails_readiness_with_details() -> None:
    fake = fake_with(
        status("orders-sink", tasks=[("RUNNING", THIS_WORKER), ("FAILED", THIS_WORKER)])
    )
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        (reason,) = body["reasons"]
        assert reason["code"] == "task_state"
        assert reason["connector"] == "orders-sink"
        assert reason["task"] == 1
        assert reason["state"] == "FAILED"
        assert reason["worker_id"] == THIS_WORKER
        assert reason["since"].endswith("Z")
        assert reason["trace"] == "org.example.Boom: task 1 failed"  # first line only
        assert sidecar.live()[0] == 200  # states never fail liveness by default


async def test_failed_task_on_another_worker_does_not_count_in_worker_scope() -> None:
    fake = fake_with(
        status("orders-sink", tasks=[("RUNNING", THIS_WORKER), ("FAILED", OTHER_WORKER)])
    )
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
    async with Sidecar(fake, scope="cluster") as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert body["reasons"][0]["worker_id"] == OTHER_WORKER


async def test_failed_task_from_the_recorded_example() -> None:
    fake = FakeConnect()
    fake.add(load("04"))  # hdfs-sink-connector: task 1 FAILED on localhost:8083
    async with Sidecar(fake, worker_id="LOCALHOST:8083") as sidecar:  # ids match case-insensitively
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert (
            body["reasons"][0]["trace"] == "org.apache.kafka.common.errors.RecordTooLargeException"
        )


async def test_connector_level_failure() -> None:
    fake = fake_with(status("jdbc-source", state="FAILED", tasks=[]))
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert body["reasons"][0]["code"] == "connector_state"
        assert body["reasons"][0]["trace"] == "org.example.ConnectorBoom: cannot start"


@pytest.mark.parametrize("state", ["PAUSED", "STOPPED"])
async def test_paused_or_stopped_connector_is_not_ready_but_live(state: str) -> None:
    body = status(
        "orders-sink", state=state, tasks=[] if state == "STOPPED" else [(state, THIS_WORKER)]
    )
    async with Sidecar(fake_with(body)) as sidecar:
        await sidecar.poll()
        code, answer = sidecar.ready()
        assert code == 503
        assert {reason["state"] for reason in answer["reasons"]} == {state}
        assert sidecar.live()[0] == 200


async def test_stopped_example_with_empty_tasks() -> None:
    fake = FakeConnect()
    fake.add(load("34"))  # STOPPED, tasks: [], on 10.0.0.12:8083
    async with Sidecar(fake, worker_id="10.0.0.12:8083") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[1]["reasons"][0]["state"] == "STOPPED"


async def test_ready_states_can_admit_paused() -> None:
    fake = fake_with(status("orders-sink", state="PAUSED", tasks=[("PAUSED", THIS_WORKER)]))
    async with Sidecar(fake, ready_states="RUNNING,PAUSED") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200


@pytest.mark.parametrize("state", ["UNASSIGNED", "RESTARTING"])
async def test_transient_states_count_only_after_the_grace(state: str) -> None:
    fake = fake_with(status("orders-sink", tasks=[(state, THIS_WORKER)]))
    clock = FakeClock()
    async with Sidecar(fake, clock, transient_grace=60) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 200
        assert body["counts"]["pending"] == 1
        clock.advance(59)
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        clock.advance(1)  # no poll: the cached verdict expires on its own
        code, body = sidecar.ready()
        assert code == 503
        assert body["reasons"][0]["state"] == state


async def test_transient_grace_restarts_when_the_state_changes() -> None:
    fake = fake_with(status("orders-sink", tasks=[("UNASSIGNED", THIS_WORKER)]))
    clock = FakeClock()
    async with Sidecar(fake, clock, transient_grace=60) as sidecar:
        await sidecar.poll()
        clock.advance(50)
        fake.set_task("orders-sink", 0, "RUNNING")
        await sidecar.poll()
        clock.advance(5)
        fake.set_task("orders-sink", 0, "UNASSIGNED")
        await sidecar.poll()
        clock.advance(30)
        await sidecar.poll()
        assert sidecar.ready()[0] == 200


async def test_unassigned_example_from_a_real_cluster() -> None:
    fake = FakeConnect()
    fake.add(load("02"))
    clock = FakeClock()
    async with Sidecar(fake, clock, worker_id="10.7.28.57:8083") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        clock.advance(61)
        assert sidecar.ready()[0] == 503


async def test_unknown_future_state_is_not_ready_and_named() -> None:
    fake = fake_with(status("orders-sink", tasks=[("DEGRADED", THIS_WORKER)]))
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert "DEGRADED (unknown state)" in body["reasons"][0]["message"]


async def test_failures_are_listed_before_other_states() -> None:
    fake = fake_with(
        status("a-paused", state="PAUSED", tasks=[("PAUSED", THIS_WORKER)]),
        status("z-broken", tasks=[("FAILED", THIS_WORKER)]),
    )
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        states = [reason["state"] for reason in sidecar.ready()[1]["reasons"]]
        assert states == ["FAILED", "PAUSED", "PAUSED"]


# --- selection, threshold, required ----------------------------------------------------------
async def test_include_and_exclude_patterns() -> None:
    fake = fake_with(
        status("orders-sink", tasks=[("RUNNING", THIS_WORKER)]),
        status("orders-test", tasks=[("FAILED", THIS_WORKER)]),
        status("audit-7", tasks=[("FAILED", THIS_WORKER)]),
    )
    async with Sidecar(fake, include="orders-*", exclude="*-test") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
    async with Sidecar(fake, include=r"re:audit-\d+") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[1]["reasons"][0]["connector"] == "audit-7"


@pytest.mark.parametrize(
    ("threshold", "expected"), [("1", 200), ("0", 503), ("25%", 200), ("24%", 503)]
)
async def test_max_unhealthy(threshold: str, expected: int) -> None:
    fake = fake_with(
        status("orders-sink", tasks=[("FAILED", THIS_WORKER)] + [("RUNNING", THIS_WORKER)] * 2)
    )
    async with Sidecar(fake, max_unhealthy=threshold) as sidecar:  # 4 objects in scope, 1 failed
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == expected
        assert body["counts"]["unhealthy"] == 1


async def test_required_connector_missing_fails_after_the_grace() -> None:
    fake = fake_with(status("orders-sink"))
    clock = FakeClock()
    async with Sidecar(
        fake, clock, required_connectors="orders-sink, payments", transient_grace=30
    ) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        clock.advance(30)
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["required_missing"]
        assert body["reasons"][0]["connector"] == "payments"
        fake.add(status("payments", worker=OTHER_WORKER))  # existence is cluster-wide
        await sidecar.poll()
        assert sidecar.ready()[0] == 200


# --- identity ---------------------------------------------------------------------------------
async def test_auto_detected_worker_id_from_pod_ip() -> None:
    fake = fake_with(
        status("orders-sink", worker="10.1.2.3:8083", tasks=[("FAILED", "10.1.2.3:8083")])
    )
    async with Sidecar(fake, host_names=("connect-0",), pod_ip="10.1.2.3") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 503
        identity = sidecar.status()["identity"]
        assert identity["matched"] == ["10.1.2.3:8083"]
        assert "10.1.2.3:8083" in identity["candidates"]


async def test_auto_detected_worker_id_from_host_name_and_advertised_port() -> None:
    fake = fake_with(
        status(
            "orders-sink",
            worker="Connect-0.connect:9093",
            tasks=[("FAILED", "connect-0.connect:9093")],
        )
    )
    async with Sidecar(fake, host_names=("connect-0.connect",), advertised_port=9093) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 503


async def test_ipv6_candidates_are_bracketed() -> None:
    fake = fake_with(
        status("orders-sink", worker="[fd00::7]:8083", tasks=[("FAILED", "[fd00::7]:8083")])
    )
    async with Sidecar(fake, host_names=(), pod_ip="fd00::7") as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 503


async def test_no_matching_worker_id_is_reported_in_status() -> None:
    fake = fake_with(status("orders-sink", worker=OTHER_WORKER, tasks=[("FAILED", OTHER_WORKER)]))
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        assert "candidate ids" in sidecar.status()["identity"]["note"]


# --- Connect failures ---------------------------------------------------------------------------
async def test_connect_refused_fails_readiness_at_once_and_liveness_after_grace() -> None:
    fake = fake_with(status("orders-sink"))
    clock = FakeClock()
    async with Sidecar(fake, clock, startup_grace=0, live_grace=60) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        fake.down = True
        clock.advance(5)
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["connect_unreachable"]
        assert "Connection refused" in body["reasons"][0]["message"]
        assert sidecar.live()[0] == 200
        clock.advance(59)
        await sidecar.poll()
        assert sidecar.live()[0] == 200
        clock.advance(1)
        code, body = sidecar.live()
        assert code == 503
        assert codes(body) == ["connect_unreachable"]
        fake.down = False
        await sidecar.poll()
        assert sidecar.live()[0] == 200
        assert sidecar.ready()[0] == 200


async def test_a_restarted_connect_gets_the_startup_grace_again() -> None:
    fake = fake_with(status("orders-sink"))
    clock = FakeClock()
    async with Sidecar(fake, clock, timeout=0.05, startup_grace=300, live_grace=60) as sidecar:
        await sidecar.poll()
        clock.advance(1000)
        fake.hang = True  # the worker hangs: liveness fails after LIVE_GRACE
        await sidecar.poll()
        clock.advance(60)
        await sidecar.poll()
        assert sidecar.live()[0] == 503
        fake.hang, fake.down = False, True  # the kubelet restarted it: port closed while it boots
        await sidecar.poll()
        clock.advance(299)
        await sidecar.poll()
        assert sidecar.live()[0] == 200
        clock.advance(61)
        await sidecar.poll()
        code, body = sidecar.live()
        assert code == 503  # never came back: startup grace and live grace both spent
        assert codes(body) == ["connect_unreachable"]


async def test_startup_grace_postpones_liveness_failures() -> None:
    fake = FakeConnect(down=True)
    clock = FakeClock()
    async with Sidecar(fake, clock, startup_grace=300, live_grace=60) as sidecar:
        await sidecar.poll()
        clock.advance(359)
        await sidecar.poll()
        assert sidecar.live()[0] == 200
        clock.advance(1)
        assert sidecar.live()[0] == 503


async def test_hung_connect_times_out_the_poll() -> None:
    fake = FakeConnect(hang=True)
    async with Sidecar(fake, timeout=0.05) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["connect_timeout"]
        assert "within 0.05s" in body["reasons"][0]["message"]


@pytest.mark.parametrize(
    ("canned", "code", "fragment"),
    [
        (
            Canned(500, b'{"error_code":500,"message":"Request timed out"}'),
            "connect_http_error",
            "500: Request timed out",
        ),
        (Canned(401, b"User cannot access the resource."), "connect_auth", "USERNAME"),
        (
            Canned(404, load("17a")["body"].encode(), "text/html;charset=utf-8"),
            "connect_starting",
            "starting",
        ),
        (Canned(200, b'{"orders": {"status": {"connector": '), "connect_bad_response", "not JSON"),
        (Canned(200, b"<html>hi</html>", "text/html"), "connect_bad_response", "not JSON"),
        (Canned(200, b"[1, 2]"), "connect_bad_response", "unexpected shape"),
        (Canned(200, b'"a string"'), "connect_bad_response", "unexpected shape"),
        (Canned(302, b"", "text/plain"), "connect_bad_response", "redirect"),
    ],
)
async def test_bad_answers_fail_readiness_with_a_reason(
    canned: Canned, code: str, fragment: str
) -> None:
    fake = FakeConnect(canned={"/connectors": canned})
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        status_code, body = sidecar.ready()
        assert status_code == 503
        assert codes(body) == [code]
        assert fragment in body["reasons"][0]["message"]


async def test_5xx_counts_against_liveness_but_401_does_not() -> None:
    clock = FakeClock()
    fake = FakeConnect(canned={"/connectors": Canned(500, b'{"error_code":500,"message":"x"}')})
    async with Sidecar(fake, clock, startup_grace=0, live_grace=10) as sidecar:
        await sidecar.poll()
        clock.advance(10)
        assert sidecar.live()[0] == 503
    fake = FakeConnect(canned={"/connectors": Canned(401, b"User cannot access the resource.")})
    async with Sidecar(fake, clock, startup_grace=0, live_grace=10) as sidecar:
        await sidecar.poll()
        clock.advance(100)
        await sidecar.poll()
        assert sidecar.live()[0] == 200


async def test_stale_snapshot_fails_readiness() -> None:
    fake = fake_with(status("orders-sink"))
    clock = FakeClock()
    async with Sidecar(fake, clock, max_age=30, timeout=5) as sidecar:
        await sidecar.poll()
        clock.advance(30)
        assert sidecar.ready()[0] == 200
        clock.advance(1)  # no poll completed for 31 s: a stuck poll
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["stale"]


# --- /health --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("example", "code"),
    [("21", "worker_starting"), ("22", "kafka_unreachable"), ("23", "worker_unhealthy")],
)
async def test_health_not_healthy_fails_readiness(example: str, code: str) -> None:
    http_status = 503 if example == "21" else 500
    fake = fake_with(status("orders-sink"))
    fake.health = (http_status, load(example))
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        status_code, body = sidecar.ready()
        assert status_code == 503
        assert codes(body) == [code]
        assert "The worker is currently" in body["reasons"][0]["message"]


async def test_health_unhealthy_fails_liveness_after_grace_but_starting_does_not() -> None:
    clock = FakeClock()
    fake = fake_with(status("orders-sink"))
    fake.health = (500, load("23"))
    async with Sidecar(fake, clock, startup_grace=0, live_grace=60) as sidecar:
        await sidecar.poll()
        clock.advance(60)
        await sidecar.poll()
        assert sidecar.live()[0] == 503
        fake.health = (503, load("21"))
        await sidecar.poll()
        assert sidecar.live()[0] == 200


async def test_health_stuck_waiting_on_kafka_fails_readiness_not_liveness() -> None:
    """Kafka down is down for every worker: /live stays 200 however long it lasts (restarting the
    whole Connect cluster would not bring Kafka back); /ready names it and recovers by itself."""
    clock = FakeClock()
    fake = fake_with(status("orders-sink"))
    fake.health = (500, load("22"))  # "... currently ensuring membership in the cluster ..."
    async with Sidecar(fake, clock, startup_grace=0, live_grace=60) as sidecar:
        await sidecar.poll()
        for _ in range(10):
            clock.advance(60)
            await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["kafka_unreachable"]
        assert "ensuring membership in the cluster" in body["reasons"][0]["message"]
        assert sidecar.live()[0] == 200
        assert sidecar.status()["connect"]["health"]["status"] == "kafka_unreachable"
        fake.health = (200, {"status": "healthy", "message": "ok"})
        await sidecar.poll()
        assert sidecar.ready()[0] == 200


async def test_health_404_means_not_supported_and_is_rechecked_later() -> None:
    clock = FakeClock()
    fake = fake_with(status("orders-sink"))
    fake.health = None
    async with Sidecar(fake, clock, health_recheck_interval=300) as sidecar:
        await sidecar.poll()
        assert sidecar.ready()[0] == 200
        assert sidecar.status()["connect"]["health"]["status"] == "unsupported"
        health_calls = sum(1 for request in fake.requests if request.url.path == "/health")
        clock.advance(10)
        await sidecar.poll()
        assert sum(1 for r in fake.requests if r.url.path == "/health") == health_calls
        clock.advance(300)
        fake.health = (200, {"status": "healthy", "message": "ok"})
        await sidecar.poll()
        assert sidecar.status()["connect"]["health"]["status"] == "healthy"


async def test_health_200_with_an_unexpected_body_is_a_bad_answer() -> None:
    fake = fake_with(status("orders-sink"))
    fake.canned["/health"] = Canned(200, b"")
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert "unexpected body" in body["reasons"][0]["message"]


async def test_health_that_does_not_answer_in_time_reads_as_unhealthy() -> None:
    fake = fake_with(status("orders-sink"))
    fake.hang_paths.add("/health")
    async with Sidecar(fake, timeout=0.05) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert codes(body) == ["worker_unhealthy"]
        assert "busy or stuck" in body["reasons"][0]["message"]
        assert sidecar.status()["connectors"][0]["name"] == "orders-sink"  # statuses still read


# --- liveness opt-in states ----------------------------------------------------------------------
async def test_live_fail_states_opt_in_with_grace() -> None:
    clock = FakeClock()
    fake = fake_with(status("orders-sink", tasks=[("FAILED", THIS_WORKER)]))
    async with Sidecar(
        fake, clock, live_fail_states="FAILED", startup_grace=0, live_grace=60
    ) as sidecar:
        await sidecar.poll()
        assert sidecar.live()[0] == 200
        clock.advance(60)
        code, body = sidecar.live()
        assert code == 503
        assert body["reasons"][0]["state"] == "FAILED"


# --- legacy workers ---------------------------------------------------------------------------
async def test_pre_2_3_worker_falls_back_to_per_connector_status_with_encoded_names() -> None:
    fake = fake_with(
        status("a/b c%", tasks=[("FAILED", THIS_WORKER)]),
        status("ünïcode", tasks=[("RUNNING", THIS_WORKER)]),
    )
    fake.legacy = True
    fake.health = None
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        code, body = sidecar.ready()
        assert code == 503
        assert body["reasons"][0]["connector"] == "a/b c%"
        paths = {request.url.raw_path.decode() for request in fake.requests}
        assert "/connectors/a%2Fb%20c%25/status" in paths
        assert "/connectors/%C3%BCn%C3%AFcode/status" in paths
        assert sidecar.status()["connect"]["legacy_api"] is True


async def test_expand_is_sent_as_one_parameter_and_only_gets_are_sent() -> None:
    fake = fake_with(status("orders-sink"))
    async with Sidecar(fake) as sidecar:
        await sidecar.poll()
        await sidecar.poll()
    assert {request.method for request in fake.requests} == {"GET"}
    expands = [
        request.url.params.get_list("expand")
        for request in fake.requests
        if request.url.path == "/connectors"
    ]
    assert expands == [["status"], ["status"]]
