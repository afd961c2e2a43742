"""What we read from Kafka Connect: typed, compact, immutable.

The status structs mirror Connect's ``ConnectorStateInfo`` and are decoded straight from the
response bytes by msgspec, one connector at a time: strict types (a task id ``"0"`` or a ``null``
worker_id makes that connector's entry malformed, not something to guess about), unknown fields
such as 4.1's ``version`` ignored, and no intermediate dicts — 10,000 connectors stay a few MB.
"""

from dataclasses import dataclass, field
from typing import Literal

import msgspec


class InstanceStatus(msgspec.Struct, frozen=True, gc=False):
    """A connector instance's state as Connect reports it."""

    state: str
    worker_id: str
    trace: str | None = None


class TaskStatus(msgspec.Struct, frozen=True, gc=False):
    """A task's state as Connect reports it."""

    id: int
    state: str
    worker_id: str
    trace: str | None = None


class ConnectorStatus(msgspec.Struct, frozen=True, gc=False):
    """``GET /connectors/{name}/status``; ``type`` is absent before Connect 1.0."""

    connector: InstanceStatus
    tasks: tuple[TaskStatus, ...]
    type: str = "unknown"


class ExpandedEntry(msgspec.Struct, frozen=True, gc=False):
    """One value of ``GET /connectors?expand=status``."""

    status: ConnectorStatus


class ServerInfo(msgspec.Struct, frozen=True, gc=False):
    """``GET /``."""

    version: str
    commit: str | None = None
    kafka_cluster_id: str | None = None


class HealthBody(msgspec.Struct, frozen=True, gc=False):
    """``GET /health`` (Connect ≥ 3.9, KIP-1017)."""

    status: str
    message: str = ""


HealthKind = Literal[
    "healthy", "starting", "unhealthy", "kafka_unreachable", "unsupported", "timeout", "unchecked"
]


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """What ``GET /health`` said in one poll.

    ``kafka_unreachable``: unhealthy, its herder stuck waiting on Kafka (app.connect.healthstage);
    ``unsupported``: the worker predates 3.9 (JSON 404); ``timeout``: the herder did not answer in
    time, which is how an unhealthy worker looks to a client with a short deadline; ``unchecked``:
    not asked this poll (a pre-3.9 worker between re-checks).
    """

    kind: HealthKind
    message: str = ""


@dataclass(frozen=True, slots=True)
class MalformedStatus:
    """A connector whose status entry could not be decoded: judged as its own problem.

    ``worker_ids`` are the worker ids that could still be read from the entry (as strings), so
    the entry is in this worker's scope, another worker's, or (empty) nobody's for sure.
    """

    error: str
    worker_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Statuses:
    """One read of every connector's status: the decoded ones and the malformed ones."""

    connectors: dict[str, ConnectorStatus]
    malformed: dict[str, MalformedStatus] = field(default_factory=dict)
    legacy_api: bool = False  # the worker ignored ?expand=status (Connect < 2.3)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One successful poll: every connector's status count, the malformed entries and health.

    The statuses themselves live in ``PollState.tracked`` (with since-when); this keeps what
    only the poll knows.
    """

    connector_count: int
    health: WorkerHealth
    malformed: dict[str, MalformedStatus] = field(default_factory=dict)
    legacy_api: bool = False
