"""Table tests of the progress window rules (app/progress/rules.py), time passed in by hand.

Each scenario is a list of reads, one every ``STEP`` seconds from t=0: what Kafka says about the
task at that moment, and the verdict expected after it. Defaults: STALL_WINDOW 600 s,
ALLOWED_LAG 0, NOT_CONSUMING_GRACE 120 s, one task ``orders-sink/0`` on partitions orders-0/1.
"""

from dataclasses import dataclass, field

import pytest

from app.progress.rules import (
    BEHIND,
    IDLE,
    NOT_CONSUMING,
    OK,
    STALLED,
    UNKNOWN,
    GroupRead,
    KafkaRead,
    Member,
    ProgressJudge,
    TaskRef,
    client_id,
)
from app.progress.windows import StallWindows, parse_stall_window

STEP = 30.0
CONNECTOR = "orders-sink"
GROUP = f"connect-{CONNECTOR}"
P0, P1 = ("orders", 0), ("orders", 1)


@dataclass
class Read:
    """What one read shows. ``committed``/``ends`` per partition; ``member`` False: not in group."""

    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    member: bool = True
    member_id: str = "m-1"
    partitions: tuple[tuple[str, int], ...] = (P0, P1)
    others: tuple[Member, ...] = ()
    down: bool = False

    def kafka(self) -> KafkaRead | None:
        if self.down:
            return None
        members = self.others
        if self.member:
            members += (
                Member(self.member_id, client_id(CONNECTOR, 0), "/10.0.0.1", self.partitions),
            )
        group = GroupRead(GROUP, members, self.committed)
        return KafkaRead({GROUP: group}, self.ends, {P0: 0, P1: 0})


def both(committed: int, end: int) -> Read:
    """Both partitions at the same committed and log-end offsets."""
    return Read({P0: committed, P1: committed}, {P0: end, P1: end})


def run(
    reads: list[Read],
    *,
    allowed: int = 0,
    window: float = 600.0,
    grace: float = 120.0,
    windows: tuple[str, ...] = (),
    connector: str = CONNECTOR,
) -> list[str]:
    judge = ProgressJudge(
        allowed_lag=allowed,
        window=StallWindows(window, windows).window,
        not_consuming_grace=grace,
    )
    ref = TaskRef(connector, 0, "10.0.0.1:8083", GROUP)
    states = []
    for index, read in enumerate(reads):
        verdicts = judge.judge([ref], read.kafka(), index * STEP, "Kafka unreachable: test")
        states.append(verdicts[(connector, 0)].state)
    return states


def steps(count: int) -> range:
    return range(count)


# 21 reads = t 0..600 s: the window is covered at the last one.
FULL = 21


def test_idle_sink_is_never_flagged() -> None:
    assert set(run([both(500, 500)] * 60)) == {IDLE}


def test_idle_sink_with_no_commits_and_empty_topic_is_idle() -> None:
    assert set(run([Read({}, {P0: 0, P1: 0})] * 30)) == {IDLE}


def test_sink_catching_up_a_backlog_is_never_flagged() -> None:
    reads = [both(100 * i, 5000) for i in steps(50)]
    assert set(run(reads)) == {OK}


def test_stuck_sink_with_lag_is_stalled_once_the_whole_window_passed() -> None:
    states = run([both(100, 150)] * 25)
    assert states[: FULL - 1] == [OK] * (FULL - 1)
    assert states[FULL - 1 :] == [STALLED] * 5


def test_stuck_sink_while_records_keep_arriving_is_stalled() -> None:
    states = run([both(100, 150 + 10 * i) for i in steps(25)])
    assert states[FULL - 2] == OK
    assert states[FULL - 1] == STALLED


def test_one_commit_inside_the_window_restarts_the_count() -> None:
    # committed moves once at t=300 (read 10); stalled only 600 s after that.
    reads = [both(100 if i < 10 else 120, 500) for i in steps(35)]
    states = run(reads)
    assert STALLED not in states[:30]
    assert states[30] == STALLED


def test_no_lag_at_any_point_of_the_window_is_not_stalled() -> None:
    # Records arrive at read 15 and are not committed: stalled 600 s after lag appeared.
    reads = [both(100, 100) if i < 15 else both(100, 130) for i in steps(40)]
    states = run(reads)
    assert states[:15] == [IDLE] * 15
    assert STALLED not in states[15 : 15 + FULL - 1]
    assert states[15 + FULL - 1] == STALLED


def test_a_sink_that_never_committed_is_stalled_with_its_lag_from_log_start() -> None:
    judge = ProgressJudge(allowed_lag=0, window=lambda _: 600.0, not_consuming_grace=120)
    ref = TaskRef(CONNECTOR, 0, "w:1", GROUP)
    read = Read({}, {P0: 40, P1: 2}).kafka()
    verdicts = [judge.judge([ref], read, i * STEP)[(CONNECTOR, 0)] for i in steps(FULL)]
    assert verdicts[-2].state == OK
    last = verdicts[-1]
    assert (last.state, last.lag, last.since) == (STALLED, 42, 0.0)
    assert last.lagging == (("orders", 0, 40), ("orders", 1, 2))


def test_behind_when_commits_move_but_lag_keeps_growing() -> None:
    reads = [both(10 * i, 20 * i + 50) for i in steps(25)]
    states = run(reads)
    assert states[: FULL - 1] == [OK] * (FULL - 1)
    assert states[FULL - 1 :] == [BEHIND] * 5


def test_not_behind_when_lag_shrank_once_in_the_window() -> None:
    reads = [both(10 * i + (60 if i == 12 else 0), 20 * i + 100) for i in steps(25)]
    assert BEHIND not in run(reads)


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [(0, STALLED), (1, OK), (5, OK)],
)
def test_a_lag_of_one_that_never_drains_is_tuned_with_allowed_lag(
    allowed: int, expected: str
) -> None:
    reads = [Read({P0: 99, P1: 50}, {P0: 100, P1: 50})] * FULL
    assert run(reads, allowed=allowed)[-1] == expected


def test_allowed_lag_compares_the_task_total_not_each_partition() -> None:
    reads = [Read({P0: 99, P1: 49}, {P0: 100, P1: 50})] * FULL  # 1 + 1 = 2
    assert run(reads, allowed=1)[-1] == STALLED
    assert run(reads, allowed=2)[-1] == OK


def test_new_connector_with_a_backlog_is_not_flagged_before_its_window() -> None:
    states = run([Read({}, {P0: 10_000, P1: 10_000})] * (FULL - 1))
    assert set(states) == {OK}


def test_member_gone_is_unknown_within_grace_then_not_consuming() -> None:
    reads = [both(100, 200)] * 2 + [Read(member=False, ends={P0: 200, P1: 200})] * 6
    states = run(reads)
    # absent from t=60; grace 120 s: still unknown at t=60..150, not consuming from t=180
    assert states == [OK, OK, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, NOT_CONSUMING, NOT_CONSUMING]


def test_member_that_never_joined_is_not_consuming_after_grace() -> None:
    states = run([Read(member=False)] * 6)
    assert states == [UNKNOWN] * 4 + [NOT_CONSUMING] * 2


def test_zero_grace_flags_at_the_first_read_without_a_member() -> None:
    assert run([Read(member=False)], grace=0) == [NOT_CONSUMING]


def test_short_absence_in_a_rebalance_is_never_flagged() -> None:
    reads = (
        [both(100 * i, 5000) for i in steps(5)]
        + [Read(member=False)] * 3  # 90 s without a member: within grace
        + [both(100 * i, 5000) for i in range(5, 10)]
    )
    assert NOT_CONSUMING not in run(reads)
    assert STALLED not in run(reads)


def test_rebalance_to_a_new_assignment_starts_a_fresh_window() -> None:
    stuck = Read({P0: 100, P1: 100}, {P0: 150, P1: 150})
    moved = Read({P0: 100, P1: 100}, {P0: 150, P1: 150}, partitions=(P0,))
    states = run([stuck] * 15 + [moved] * 25)
    assert STALLED not in states[: 15 + FULL - 1]
    assert states[15 + FULL - 1] == STALLED


def test_a_new_consumer_instance_starts_a_fresh_window() -> None:
    stuck = both(100, 150)
    restarted = Read({P0: 100, P1: 100}, {P0: 150, P1: 150}, member_id="m-2")
    states = run([stuck] * FULL + [restarted] * FULL)
    assert states[FULL - 1] == STALLED
    assert states[FULL : 2 * FULL - 1] == [OK] * (FULL - 1)
    assert states[-1] == STALLED


def test_members_with_foreign_client_ids_make_the_task_unknown_not_not_consuming() -> None:
    foreign = Member("x", "my-own-client-id", "/10.0.0.9", (P0, P1))
    states = run([Read(member=False, others=(foreign,))] * 10)
    assert set(states) == {UNKNOWN}


def test_other_tasks_present_still_flag_the_missing_one() -> None:
    sibling = Member("s", client_id(CONNECTOR, 1), "/10.0.0.2", (P1,))
    states = run([Read(member=False, others=(sibling,))] * 6)
    assert states[-1] == NOT_CONSUMING


def test_kafka_down_is_unknown_and_keeps_the_window() -> None:
    stuck = both(100, 150)
    states = run([stuck] * 10 + [Read(down=True)] * 5 + [stuck] * 6)
    assert states[10:15] == [UNKNOWN] * 5
    assert states[-1] == STALLED  # t=600: samples at both ends, lag throughout


def test_a_member_with_no_partitions_is_idle() -> None:
    assert set(run([Read(partitions=())] * 30)) == {IDLE}


@pytest.mark.parametrize(
    ("connector", "expected_at_600", "expected_at_3600"),
    [("s3-orders", OK, STALLED), ("orders-sink", STALLED, STALLED)],
)
def test_per_connector_windows(connector: str, expected_at_600: str, expected_at_3600: str) -> None:
    judge = ProgressJudge(
        allowed_lag=0,
        window=StallWindows(600.0, ("s3-*=3600",)).window,
        not_consuming_grace=120,
    )
    ref = TaskRef(connector, 0, "w:1", GROUP)
    members = (Member("m", client_id(connector, 0), "/h", (P0,)),)
    read = KafkaRead({GROUP: GroupRead(GROUP, members, {P0: 1})}, {P0: 9})
    states = {t: judge.judge([ref], read, t)[(connector, 0)].state for t in range(0, 3601, 60)}
    assert states[540] == OK
    assert states[600] == expected_at_600
    assert states[3540] == expected_at_600  # s3-*: still within its 3600 s window
    assert states[3600] == expected_at_3600


def test_unknown_group_id_and_unreadable_group_are_unknown() -> None:
    judge = ProgressJudge(allowed_lag=0, window=lambda _: 600.0, not_consuming_grace=0)
    no_group = TaskRef(CONNECTOR, 0, "w:1", None)
    unread = TaskRef("other", 0, "w:1", "connect-other")
    read = KafkaRead({}, {}, errors={"connect-other": "GROUP_AUTHORIZATION_FAILED"})
    verdicts = judge.judge([no_group, unread], read, 0.0)
    assert verdicts[(CONNECTOR, 0)].state == UNKNOWN
    assert "not known yet" in verdicts[(CONNECTOR, 0)].detail
    assert verdicts[("other", 0)].state == UNKNOWN
    assert "GROUP_AUTHORIZATION_FAILED" in verdicts[("other", 0)].detail


def test_missing_log_end_offset_is_unknown() -> None:
    assert run([Read({P0: 1, P1: 1}, {P0: 5})]) == [UNKNOWN]


def test_not_read_yet_is_unknown_with_the_failure() -> None:
    judge = ProgressJudge(allowed_lag=0, window=lambda _: 600.0, not_consuming_grace=0)
    ref = TaskRef(CONNECTOR, 0, "w:1", GROUP)
    verdict = judge.judge([ref], None, 0.0, "Kafka unreachable: refused")[(CONNECTOR, 0)]
    assert (verdict.state, verdict.detail) == (UNKNOWN, "Kafka unreachable: refused")


def test_tasks_no_longer_listed_are_forgotten() -> None:
    judge = ProgressJudge(allowed_lag=0, window=lambda _: 600.0, not_consuming_grace=0)
    ref = TaskRef(CONNECTOR, 0, "w:1", GROUP)
    stuck = both(100, 150).kafka()
    for t in range(0, 601, 30):
        judge.judge([ref], stuck, float(t))
    assert judge.judge([ref], stuck, 630.0)[(CONNECTOR, 0)].state == STALLED
    assert judge.judge([], stuck, 660.0) == {}
    assert judge.judge([ref], stuck, 690.0)[(CONNECTOR, 0)].state == OK  # a fresh start


def test_duplicate_client_ids_prefer_the_member_with_partitions() -> None:
    old = Member("old", client_id(CONNECTOR, 0), "/h", ())
    # The old member (no partitions) listed first must not hide the new one's lag.
    reads = [Read({P0: 1, P1: 1}, {P0: 5, P1: 1}, others=(old,), member_id="new")] * 2
    assert run(reads) == [OK, OK]


def test_most_lagging_partitions_first_and_at_most_three() -> None:
    parts = tuple(("t", i) for i in range(5))
    judge = ProgressJudge(allowed_lag=0, window=lambda _: 600.0, not_consuming_grace=0)
    ref = TaskRef(CONNECTOR, 0, "w:1", GROUP)
    members = (Member("m", client_id(CONNECTOR, 0), "/h", parts),)
    committed = dict.fromkeys(parts, 0)
    ends = {tp: tp[1] * 10 for tp in parts}
    read = KafkaRead({GROUP: GroupRead(GROUP, members, committed)}, ends)
    verdict = judge.judge([ref], read, 0.0)[(CONNECTOR, 0)]
    assert verdict.lag == 100
    assert verdict.lagging == (("t", 4, 40), ("t", 3, 30), ("t", 2, 20))
    assert verdict.partitions == 5


@pytest.mark.parametrize(
    ("item", "parsed"),
    [
        ("s3-*=3600", ("s3-*", 3600.0)),
        (" re:a=b.*=60 ", ("re:a=b.*", 60.0)),
        ("x=0.5", ("x", 0.5)),
    ],
)
def test_stall_window_items(item: str, parsed: tuple[str, float]) -> None:
    assert parse_stall_window(item.strip()) == parsed


@pytest.mark.parametrize("item", ["x", "=5", "x=", "x=abc", "x=0", "x=-1", "x=inf", "re:(=5"])
def test_bad_stall_window_items(item: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_stall_window(item)


def test_first_matching_window_wins_and_default_otherwise() -> None:
    windows = StallWindows(600.0, ("s3-*=3600", "s3-fast=60", "re:gcs-.*=1800"))
    assert windows.window("s3-fast") == 3600.0
    assert windows.window("gcs-x") == 1800.0
    assert windows.window("gcsx") == 600.0
    assert windows.longest == 3600.0
