"""The sidecar with a fake Kafka reader, for the cost of judging many sink tasks (bench/run.py).

``BENCH_FAKE_KAFKA_TASKS=T`` (tasks per group) and ``BENCH_FAKE_KAFKA_PARTITIONS=P`` (partitions
per task): every group ``connect-<name>`` the progress loop asks for answers at once with T
members ``connector-consumer-<name>-<t>``, P partitions each, committed offsets that move a
little each read behind log-end offsets. The reader's child process builds this reader instead
of ``app.progress.kafka``'s, so librdkafka is never loaded: the RSS and CPU measured are the
progress checks' own (judging, views, metrics), not the Kafka client's (measured against a real
broker).
Everything else is the real sidecar: ``connect-probe`` configured by environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from app.progress.rules import GroupRead, KafkaRead, Member


class FakeReader:
    """Answers any groups at once; counts reads (it is never called on the probe path)."""

    def __init__(self, settings: object) -> None:
        self.tasks = int(os.environ.get("BENCH_FAKE_KAFKA_TASKS", "4"))
        self.partitions = int(os.environ.get("BENCH_FAKE_KAFKA_PARTITIONS", "4"))
        self.reads = 0

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        self.reads += 1
        step = self.reads * 10
        reads: dict[str, GroupRead] = {}
        ends: dict[tuple[str, int], int] = {}
        for group in groups:
            name = group.removeprefix("connect-")
            topic = f"topic-{name}"
            members = []
            committed: dict[tuple[str, int], int] = {}
            for t in range(self.tasks):
                parts = tuple((topic, t * self.partitions + k) for k in range(self.partitions))
                members.append(Member(f"m-{name}-{t}", f"connector-consumer-{name}-{t}",
                                      "/10.0.0.1", parts))  # fmt: skip
                for tp in parts:
                    committed[tp] = step
                    ends[tp] = step + 3
            reads[group] = GroupRead(group, tuple(members), committed, "STABLE")
        return KafkaRead(reads, ends)


def main() -> int:
    # The reader runs in the Kafka client's child process (app/progress/isolated.py), which
    # imports it by name: this module, from bench/ on the path the child inherits.
    import app.progress.isolated as isolated
    from app.cli import main as sidecar

    isolated.KAFKA_READER = "progress_sidecar:FakeReader"
    return sidecar(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
