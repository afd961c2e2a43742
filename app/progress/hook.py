"""What the answer cache asks of the progress checks (``wiring.ProgressRuntime``), as a protocol
so the cache needs no import of the progress package's machinery (nor librdkafka when off)."""

from collections.abc import Mapping
from typing import Any, Final, Protocol

from app.liveness import KafkaEvidence
from app.readiness import Findings, Judging
from app.verdict import Verdict


class ProgressHook(Protocol):
    @property
    def version(self) -> int: ...

    def ready_check(self, judging: Judging) -> Findings: ...

    def amend_live(self, verdict: Verdict, now: float, wall_offset: float) -> Verdict: ...

    def kafka_evidence(self) -> KafkaEvidence | None: ...

    def status_section(self, now: float, wall_offset: float) -> Mapping[str, Any]: ...


SOURCES_NOTE: Final = (
    "source connectors' progress is not judged: only sink tasks, through their consumer groups"
)
DISABLED_SECTION: Final = {
    "enabled": False,
    "note": "set CONNECT_PROBE_KAFKA_BOOTSTRAP_SERVERS to judge whether this worker's RUNNING "
    f"sink tasks make progress; {SOURCES_NOTE}",
}
