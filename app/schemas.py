"""Response shapes for the OpenAPI schema. The handlers write bytes directly (speed); these
models only document what those bytes are, and tests check the two agree."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class ReasonBody(BaseModel):
    """One reason behind a verdict."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    connector: str | None = None
    task: int | None = None
    state: str | None = None
    worker_id: str | None = None
    since: str | None = None
    trace: str | None = None


class ProbeBody(BaseModel):
    """The body of /ready and /live (both for 200 and 503)."""

    model_config = ConfigDict(extra="forbid")

    probe: str
    ok: bool
    summary: str
    scope: str
    worker_id: str | None
    last_success: str | None
    counts: dict[str, int]
    omitted: int
    reasons: list[ReasonBody]


class HealthzBody(BaseModel):
    """The body of /healthz."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    message: str


StatusBody = dict[str, Any]
