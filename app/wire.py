"""What the sidecar says over HTTP, defined once: reason codes, reasons, probe and /healthz bodies.

These structs are what the handlers encode and what ``/openapi.json`` shows (``openapi_components``
derives the schema from them), so the documented shape and the bytes cannot drift apart. Reason
codes are public API — alerts, scripts and the README's table rely on them — so they live here as
one enum (a test keeps the README's table equal to it).
"""

from enum import StrEnum
from typing import Any

import msgspec


class ReasonCode(StrEnum):
    """Why a probe failed (or what is pending); the ``code`` of each reason."""

    # Nothing to judge with, or the judging itself failed.
    NO_POLL_YET = "no_poll_yet"
    INTERNAL_ERROR = "internal_error"
    STALE = "stale"
    # The poll of Connect's REST API failed.
    CONNECT_UNREACHABLE = "connect_unreachable"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_HTTP_ERROR = "connect_http_error"
    CONNECT_AUTH = "connect_auth"
    CONNECT_STARTING = "connect_starting"
    CONNECT_CONFLICT = "connect_conflict"
    CONNECT_BAD_RESPONSE = "connect_bad_response"
    CONNECT_ERROR = "connect_error"
    # Connect's own word on the worker (GET /health, Connect >= 3.9).
    WORKER_STARTING = "worker_starting"
    WORKER_UNHEALTHY = "worker_unhealthy"
    KAFKA_UNREACHABLE = "kafka_unreachable"
    # Connectors and tasks.
    CONNECTOR_STATE = "connector_state"
    TASK_STATE = "task_state"
    STATUS_MALFORMED = "status_malformed"
    REQUIRED_MISSING = "required_missing"
    # Progress of RUNNING sink tasks (opt-in, Kafka read by the sidecar).
    TASK_STALLED = "task_stalled"
    TASK_NOT_CONSUMING = "task_not_consuming"


class Reason(msgspec.Struct, frozen=True, omit_defaults=True):
    """One thing wrong (or pending), with enough detail for the human running curl."""

    code: ReasonCode
    message: str
    connector: str | None = None
    task: int | None = None
    state: str | None = None
    worker_id: str | None = None
    since: str | None = None
    trace: str | None = None


class ProbeBody(msgspec.Struct, frozen=True):
    """The body of /ready and /live, for 200 and 503 alike."""

    probe: str
    ok: bool
    summary: str
    scope: str
    worker_id: str | None
    last_success: str | None
    counts: dict[str, int]
    omitted: int
    reasons: list[Reason]


class HealthzBody(msgspec.Struct, frozen=True):
    """The body of /healthz: the sidecar's own poll loop."""

    ok: bool
    message: str


COMPONENTS_PATH = "#/components/schemas/{name}"


def openapi_components() -> dict[str, Any]:
    """JSON schemas of the bodies above, for ``/openapi.json``."""
    _, components = msgspec.json.schema_components(
        (ProbeBody, HealthzBody), ref_template=COMPONENTS_PATH
    )
    return components


def json_response(schema: str, description: str) -> dict[str, Any]:
    """A FastAPI ``responses`` entry whose body is one of the components above."""
    ref = COMPONENTS_PATH.format(name=schema)
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}
