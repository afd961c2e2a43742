"""The second opinion on a lost Kafka (issue 12 item 3): Connect's /health says this worker cannot
reach Kafka; /live fails only when the sidecar's own Kafka reads say Kafka is reachable (a zombie
worker), after LIVE_GRACE and never within STARTUP_GRACE. Table tests with explicit times."""

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.connect.client import ConnectClient
from app.connect.models import Snapshot, WorkerHealth
from app.identity import explicit_identity
from app.liveness import KafkaEvidence, evaluate_live, zombie_since
from app.pollstate import PollFailure, PollState
from app.progress.reading import KafkaUnavailable
from app.progress.rules import GroupRead, KafkaRead, Member, client_id
from app.progress.wiring import build
from app.rules import Rules
from app.wire import ReasonCode
from tools.fakeclock import FakeClock
from tools.fakeconnect.bodies import THIS_WORKER, status
from tools.fakeconnect.model import FakeConnect
from tools.sidecar import Sidecar, codes

# tests/data/22-*.json: the worker's herder is "ensuring membership in the cluster" (a Kafka wait).
UNHEALTHY_ENSURING_MEMBERSHIP = json.loads(
    next((Path(__file__).parent / "data").glob("22-*.json")).read_text(encoding="utf-8")
)
FRESH = 40.0  # KafkaEvidence.fresh_for in these tables
LOST = 1000.0  # the poll that first saw /health name a Kafka stage


def state(health: str = "kafka_unreachable", lost: float | None = LOST) -> PollState:
    return PollState(
        started=0.0,
        generation=1,
        snapshot=Snapshot(connector_count=0, health=WorkerHealth(health, "stage: reading the log")),  # type: ignore[arg-type]
        polls=10,
        last_attempt=LOST,
        last_success=LOST,
        kafka_lost_since=lost,
    )


def rules(live_grace: float = 60.0, startup_grace: float = 300.0) -> Rules:
    return Rules(
        explicit_identity("127.0.0.1:8083"), live_grace=live_grace, startup_grace=startup_grace
    )


@pytest.mark.parametrize(
    ("case", "poll", "kafka", "now", "expected"),
    [
        ("sidecar reads Kafka since before the loss: zombie from the loss", state(),
         KafkaEvidence(500.0, 1010.0, FRESH), 1020.0, LOST),
        ("Kafka back for everyone: counted from the sidecar's first read again", state(),
         KafkaEvidence(1200.0, 1210.0, FRESH), 1220.0, 1200.0),
        ("sidecar's reads fail too (no evidence): Kafka down for everyone", state(),
         None, 1020.0, None),
        ("latest success before the worker lost Kafka proves nothing now", state(),
         KafkaEvidence(500.0, 990.0, FRESH), 1000.0, None),
        ("evidence gone stale (reads stopped)", state(),
         KafkaEvidence(500.0, 1010.0, FRESH), 1010.0 + FRESH + 0.1, None),
        ("evidence at the edge of fresh", state(),
         KafkaEvidence(500.0, 1010.0, FRESH), 1010.0 + FRESH, LOST),
        ("worker healthy: nothing to second-guess", state("healthy", None),
         KafkaEvidence(500.0, 1010.0, FRESH), 1020.0, None),
        ("Connect not answering: that is its own liveness trouble", replace(
            state(), failure=PollFailure(ReasonCode.CONNECT_UNREACHABLE, "refused", live=True)),
         KafkaEvidence(500.0, 1010.0, FRESH), 1020.0, None),
    ],
)  # fmt: skip
def test_zombie_since(
    case: str, poll: PollState, kafka: KafkaEvidence | None, now: float, expected: float | None
) -> None:
    assert zombie_since(poll, kafka, now) == expected, case


@pytest.mark.parametrize(
    ("case", "kafka", "now", "live"),
    [
        ("zombie within LIVE_GRACE: still live", KafkaEvidence(500.0, 1050.0, FRESH), 1059.0, True),
        ("zombie past LIVE_GRACE: not live", KafkaEvidence(500.0, 1050.0, FRESH), 1060.0, False),
        ("Kafka down for everyone, for long: live", None, 5000.0, True),
        ("Kafka back at 1100, worker still stuck: grace from 1100",
         KafkaEvidence(1100.0, 1150.0, FRESH), 1159.0, True),
        ("Kafka back at 1100, worker still stuck 60 s later: not live",
         KafkaEvidence(1100.0, 1160.0, FRESH), 1160.0, False),
    ],
)  # fmt: skip
def test_live_grace_applies(case: str, kafka: KafkaEvidence | None, now: float, live: bool) -> None:
    verdict = evaluate_live(state(), rules(startup_grace=0.0), now, 0.0, kafka)
    assert verdict.ok is live, case
    if not live:
        assert [r.code for r in verdict.reasons] == [ReasonCode.KAFKA_UNREACHABLE]
        assert "zombie" in verdict.reasons[0].message


def test_startup_grace_still_rules() -> None:
    """A zombie right after the sidecar (or the worker) started waits out STARTUP_GRACE first."""
    poll = replace(state(), started=900.0)
    kafka = KafkaEvidence(900.0, 1300.0, FRESH)
    assert evaluate_live(poll, rules(startup_grace=300.0), 1259.0, 0.0, kafka).ok  # 1200 + 60
    assert not evaluate_live(poll, rules(startup_grace=300.0), 1260.0, 0.0, kafka).ok


def test_verdict_expires_when_the_second_opinion_goes_stale_or_the_grace_ends() -> None:
    kafka = KafkaEvidence(500.0, 1010.0, FRESH)
    verdict = evaluate_live(state(), rules(startup_grace=0.0), 1020.0, 0.0, kafka)
    assert verdict.ok
    assert verdict.valid_until == min(LOST + 60.0, 1010.0 + FRESH)
    # Without evidence nothing is due: today's behaviour, live for as long as it lasts.
    assert evaluate_live(state(), rules(startup_grace=0.0), 1020.0, 0.0, None).valid_until > 1e9


# --- wired: the poller's kafka_lost_since, the progress view's reads, the answer cache --------


class _Reader:
    """Kafka for the sidecar's own reads: up (one idle member) or down."""

    def __init__(self) -> None:
        self.down = False

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        if self.down:
            raise KafkaUnavailable("connection refused")
        tp = ("orders-t", 0)
        reads = {
            g: GroupRead(g, (Member("m", client_id("orders", 0), "/10.0.0.1", (tp,)),), {tp: 5})
            for g in groups
        }
        return KafkaRead(reads, {tp: 5})


async def _wired(reader: _Reader, clock: FakeClock, fake: FakeConnect) -> tuple[Sidecar, Any]:
    sidecar = Sidecar(
        fake,
        clock,
        startup_grace=0,
        live_grace=60,
        kafka_bootstrap_servers="kafka:9092",
        progress_interval=30.0,
    )
    await sidecar.__aenter__()
    http = sidecar._http
    assert http is not None
    rules = Rules.from_settings(sidecar.settings, sidecar.answers.identity)
    runtime = build(
        sidecar.settings,
        ConnectClient(http, sidecar.settings),
        rules,
        clock,
        lambda: sidecar.answers.state,
        reader,
    )
    sidecar.answers.progress = runtime
    return sidecar, runtime


@pytest.mark.anyio
async def test_wired_zombie_fails_live_and_kafka_down_for_all_does_not() -> None:
    clock = FakeClock()
    fake = FakeConnect()
    fake.add(status("orders", tasks=[("RUNNING", THIS_WORKER)], kind="sink"))
    reader = _Reader()
    sidecar, runtime = await _wired(reader, clock, fake)
    try:
        await sidecar.poll()
        await runtime.loop.cycle()
        fake.health = (500, UNHEALTHY_ENSURING_MEMBERSHIP)
        for _ in range(2):  # 2 x 30 s: the sidecar's reads keep succeeding
            clock.advance(30)
            await sidecar.poll()
            await runtime.loop.cycle()
        assert sidecar.live()[0] == 200  # 30 s of the 60 s LIVE_GRACE
        clock.advance(30)
        await sidecar.poll()
        await runtime.loop.cycle()
        code, body = sidecar.live()
        assert code == 503, body
        assert codes(body) == ["kafka_unreachable"]
        assert "zombie" in body["reasons"][0]["message"]
        assert sidecar.status()["progress"]["kafka"]["reachable_since"] is not None

        reader.down = True  # now Kafka is gone for the sidecar too: down for everyone
        clock.advance(30)
        await sidecar.poll()
        await runtime.loop.cycle()
        assert sidecar.live()[0] == 200
        assert sidecar.status()["progress"]["kafka"]["reachable_since"] is None
        for _ in range(5):
            clock.advance(60)
            await sidecar.poll()
            await runtime.loop.cycle()
            assert sidecar.live()[0] == 200
        assert codes(sidecar.ready()[1]) == ["kafka_unreachable"]
    finally:
        await runtime.aclose()
        await sidecar.__aexit__(None, None, None)
