"""The JSON bodies Kafka Connect answers, built in one place (stdlib only).

Shapes as Connect 3.9 writes them: ``ConnectorStateInfo`` for ``/connectors/{name}/status``, the
expanded map of ``/connectors?expand=status``, ``ServerInfo`` for ``/``, ``/health``, and the
``{"error_code", "message"}`` error body.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

THIS_WORKER: Final = "10.0.0.1:8083"
OTHER_WORKER: Final = "10.0.0.2:8083"

CONNECTOR_TRACE: Final = "org.example.ConnectorBoom: cannot start\n\tat a.b(C.java:2)"
LONG_TRACE: Final = "org.apache.kafka.connect.errors.ConnectException: fake failure\n" + "".join(
    f"\tat org.example.FakeTask.method{i}(FakeTask.java:{i})\n" for i in range(60)
)

HEALTHY: Final[Mapping[str, str]] = {
    "status": "healthy",
    "message": "Worker has completed startup and is ready to handle requests.",
}
ROOT: Final[Mapping[str, str]] = {
    "version": "3.9.0",
    "commit": "a60e31147e6b01ee",
    "kafka_cluster_id": "Xq1Yz2Ab3Cd4Ef5Gh6Ij7K",
}

Task = tuple[str, str] | tuple[str, str, str]
"""A task as (state, worker_id) or (state, worker_id, trace)."""


def status(
    name: str,
    state: str = "RUNNING",
    worker: str = THIS_WORKER,
    tasks: int | Sequence[Task] | None = None,
    kind: str = "sink",
    trace: str | None = None,
) -> dict[str, Any]:
    """A ``ConnectorStateInfo`` body.

    ``tasks``: ``None`` is one RUNNING task on ``worker``; an int is that many tasks sharing the
    connector's state and worker; a sequence gives each task's (state, worker[, trace]). FAILED
    entries carry a trace, as Connect's do: the task's own if given, else ``trace``, else a short
    one naming the task (``org.example.Boom: task 1 failed``) or the connector.
    """
    if tasks is None:
        specs: Sequence[Task] = [("RUNNING", worker)]
    elif isinstance(tasks, int):
        specs = [(state, worker)] * tasks
    else:
        specs = tasks
    task_list = []
    for index, spec in enumerate(specs):
        entry: dict[str, Any] = {"id": index, "state": spec[0], "worker_id": spec[1]}
        if spec[0] == "FAILED" or len(spec) == 3:
            entry["trace"] = (
                spec[2]
                if len(spec) == 3
                else trace or f"org.example.Boom: task {index} failed\n\tat x.y(Z.java:1)"
            )
        task_list.append(entry)
    connector: dict[str, Any] = {"state": state, "worker_id": worker}
    if state == "FAILED":
        connector["trace"] = trace or CONNECTOR_TRACE
    return {"name": name, "connector": connector, "tasks": task_list, "type": kind}


def expanded(statuses: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``GET /connectors?expand=status`` map of these statuses."""
    return {name: {"status": body} for name, body in statuses.items()}


def error(code: int, message: str | None = None) -> dict[str, Any]:
    """Connect's error body."""
    return {"error_code": code, "message": message or f"HTTP {code} answered on purpose"}


def dumps(value: object) -> bytes:
    """Compact JSON, as Connect's Jackson writes it."""
    return json.dumps(value, separators=(",", ":")).encode()
