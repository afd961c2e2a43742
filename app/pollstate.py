"""The poller's published view of Connect: replaced whole after each poll, read by everyone else."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.connect.models import ServerInfo, Snapshot
from app.tracking import Tracked
from app.wire import ReasonCode


@dataclass(frozen=True, slots=True)
class PollFailure:
    """Why the latest poll failed; ``live`` when it is the kind restarting Connect could fix."""

    code: ReasonCode
    message: str
    live: bool


@dataclass(frozen=True, slots=True)
class PollState:
    """Everything verdicts need. Times are monotonic seconds unless named ``*_wall``."""

    started: float
    generation: int = 0
    snapshot: Snapshot | None = None
    tracked: Mapping[str, Tracked] = field(default_factory=dict)
    missing_since: Mapping[str, float] = field(default_factory=dict)
    polls: int = 0
    last_attempt: float | None = None
    last_duration: float | None = None
    last_success: float | None = None
    failure: PollFailure | None = None
    # Since when Connect has continuously been unreachable / timing out / 5xx / /health unhealthy.
    live_trouble_since: float | None = None
    # When Connect last (re)started as far as the sidecar can tell: the sidecar's own start, or the
    # poll where a reachable worker turned unreachable (its container restarted, or it crashed).
    # STARTUP_GRACE counts from here, so a worker restarted by the liveness probe is not killed
    # again while it scans its plug-ins.
    connect_started: float | None = None
    # STARTUP_GRACE was applied again during the current stretch of liveness trouble: it is not
    # applied again until the trouble clears (a flapping worker must still be judged).
    startup_rearmed: bool = False
    live_trouble: str | None = None
    # Since when Connect's /health has continuously said the worker cannot reach Kafka (a stage
    # waiting on Kafka), as of the end of the poll that first said so: the zombie check of
    # app.liveness compares it with the sidecar's own Kafka reads.
    kafka_lost_since: float | None = None
    server_info: ServerInfo | None = None
