"""Configuration: the only place environment variables are read.

Every field is settable as ``CONNECT_PROBE_<FIELD>`` and as a command-line flag (see ``app.cli``).
Durations are seconds (floats); lists are comma-separated strings in the environment.
"""

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.states import KNOWN_STATES, TRANSIENT_STATES

ENV_PREFIX = "CONNECT_PROBE_"

CommaList = Annotated[tuple[str, ...], NoDecode]


def split_comma_list(value: object) -> object:
    """Turn ``"a, b,,c"`` into ``("a", "b", "c")``; leave sequences alone."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


class MaxUnhealthy:
    """How many unhealthy objects in scope readiness tolerates: a count, or a percentage."""

    __slots__ = ("count", "percent")

    def __init__(self, text: str) -> None:
        text = text.strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%|(\d+)", text)
        if match is None:
            raise ValueError("must be a whole number (e.g. 2) or a percentage (e.g. 10%)")
        self.percent: float | None = float(match.group(1)) if match.group(1) else None
        self.count: int | None = int(match.group(2)) if match.group(2) else None
        if self.percent is not None and self.percent > 100:
            raise ValueError("a percentage must be between 0% and 100%")

    def allowed(self, in_scope: int) -> int:
        """How many of ``in_scope`` objects may be unhealthy while still ready."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return math.floor(in_scope * self.percent / 100)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.percent:g}%"


class Settings(BaseSettings):
    """Everything the sidecar can be told. Field names are the env names without the prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    # --- where Connect is and how to reach it -----------------------------------------------
    connect_url: str = Field(
        "http://localhost:8083",
        description="Base URL of the local Kafka Connect REST API (http or https).",
    )
    username: str | None = Field(None, description="Basic-auth user for Connect's REST API.")
    password: SecretStr | None = Field(
        None, description="Basic-auth password (prefer PASSWORD_FILE). May contain ':'."
    )
    password_file: Path | None = Field(
        None, description="File holding the basic-auth password (a trailing newline is dropped)."
    )
    ca_file: Path | None = Field(None, description="PEM CA bundle to verify Connect's certificate.")
    cert_file: Path | None = Field(None, description="PEM client certificate for mutual TLS.")
    key_file: Path | None = Field(None, description="PEM private key of the client certificate.")
    verify: bool = Field(True, description="Verify Connect's TLS certificate and host name.")
    timeout: PositiveFloat = Field(
        11.0,
        description="Whole-request deadline for each Connect request, seconds. Above 10 s so "
        "that /health's own 10 s budget can answer 503/500 with a reason.",
    )
    max_response_bytes: int | None = Field(
        None,
        gt=0,
        description="Largest Connect response body read; a bigger one fails that poll. "
        "Default: derived from the container's memory limit (cgroup) so that peak memory stays "
        "within 75% of it, at most 64 MiB (67108864).",
    )
    status_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="Parallel per-connector status requests for workers older than 2.3 "
        "(which ignore ?expand=status).",
    )

    # --- the sidecar's own server -----------------------------------------------------------
    host: str = Field("0.0.0.0", description="Address the sidecar listens on.")
    port: int = Field(18083, ge=1, le=65535, description="Port the sidecar listens on.")

    # --- polling ----------------------------------------------------------------------------
    poll_interval: PositiveFloat = Field(
        5.0, description="Seconds between the starts of two polls of Connect."
    )
    max_age: PositiveFloat = Field(
        30.0, description="Readiness fails when the last successful poll is older than this."
    )
    health_recheck_interval: PositiveFloat = Field(
        300.0,
        description="After /health answered 404 (Connect < 3.9), seconds until it is tried again.",
    )

    # --- whose objects count ----------------------------------------------------------------
    scope: Literal["worker", "cluster"] = Field(
        "worker",
        description="worker: judge only connectors/tasks whose worker_id is this worker's; "
        "cluster: judge every object.",
    )
    worker_id: str | None = Field(
        None,
        description="This worker's id as Connect reports it (host:port). Auto-detected if unset.",
    )
    pod_ip: str | None = Field(
        None,
        validation_alias=AliasChoices("POD_IP", "CONNECT_PROBE_POD_IP", "pod_ip"),
        description="This pod's IP (env POD_IP, from the downward API): a worker-id candidate.",
    )
    advertised_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port in this worker's id for auto-detection (default: CONNECT_URL's port).",
    )
    include: CommaList = Field(
        (), description="Connector name patterns to judge (glob, or re:REGEX); empty = all."
    )
    exclude: CommaList = Field((), description="Connector name patterns never judged.")
    required_connectors: CommaList = Field(
        (),
        description="Connectors that must exist (cluster-wide); missing for longer than "
        "TRANSIENT_GRACE fails readiness.",
    )

    # --- verdict rules ----------------------------------------------------------------------
    ready_states: CommaList = Field(
        ("RUNNING",), description="States that count as ready for connectors and tasks."
    )
    live_fail_states: CommaList = Field(
        (),
        description="States that fail liveness after LIVE_GRACE (e.g. FAILED); empty = none.",
    )
    transient_grace: NonNegativeFloat = Field(
        60.0,
        description="Seconds UNASSIGNED/RESTARTING (and a missing required connector) are "
        "tolerated before they count.",
    )
    live_grace: NonNegativeFloat = Field(
        60.0,
        description="Seconds Connect must be continuously unreachable or unhealthy "
        "before /live fails.",
    )
    startup_grace: NonNegativeFloat = Field(
        300.0, description="Seconds after the sidecar starts during which /live never fails."
    )
    max_unhealthy: Annotated[MaxUnhealthy, NoDecode] = Field(
        MaxUnhealthy("0"),
        description="Unhealthy objects in scope tolerated by readiness: N or N%.",
    )

    # --- auto-restart (issue 8; app/restart.py, docs/auto-restart.md) ----------------------
    auto_restart: bool = Field(
        False,
        description="Restart FAILED connectors and tasks running on this worker (never other "
        "workers', whatever SCOPE says), with backoff. Off: the sidecar only sends GETs.",
    )
    auto_restart_backoff_unit: PositiveFloat = Field(
        60.0,
        description="Seconds in one backoff unit: after restart attempt n the next waits "
        "min((n*n+n) units, AUTO_RESTART_BACKOFF_MAX), i.e. 0, 2, 6, 12, 20... units.",
    )
    auto_restart_backoff_max: PositiveFloat = Field(
        3600.0,
        description="Longest wait between two restart attempts of a connector, seconds "
        "(default 3600: with the 60 s unit, Strimzi's schedule ending hourly).",
    )
    auto_restart_max: int | None = Field(
        None,
        ge=1,
        description="Restart attempts per connector before giving up until it has been healthy "
        "again; unset (or 'unlimited') = never give up.",
    )

    # --- output -----------------------------------------------------------------------------
    expose_traces: bool = Field(
        False, description="Show full stack traces in /status (probe bodies always cut to 1 line)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    metrics_scope: Literal["probe", "cluster"] = Field(
        "probe",
        description="Connector/task series on /metrics: probe = the objects the probes judge "
        "(SCOPE, INCLUDE, EXCLUDE); cluster = every connector and task Connect reports "
        "(set it on one sidecar only, or each worker exports the whole cluster).",
    )

    @field_validator(
        "include",
        "exclude",
        "required_connectors",
        "ready_states",
        "live_fail_states",
        mode="before",
    )
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return split_comma_list(value)

    @field_validator("ready_states", "live_fail_states")
    @classmethod
    def _known_states(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        states = tuple(state.upper() for state in value)
        unknown = [state for state in states if state not in KNOWN_STATES]
        if unknown:
            raise ValueError(
                f"unknown state {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_STATES))}"
            )
        return states

    @field_validator("include", "exclude")
    @classmethod
    def _valid_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise ValueError(f"bad regular expression {pattern[3:]!r}: {exc}") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("max_unhealthy", mode="before")
    @classmethod
    def _parse_max_unhealthy(cls, value: object) -> object:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return MaxUnhealthy(str(value))
        return value

    @field_validator("auto_restart_max", mode="before")
    @classmethod
    def _unlimited_attempts(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "unlimited", "none"):
            return None
        return value

    @field_validator("connect_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. http://localhost:8083"
            )
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has an invalid port") from None
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use USERNAME and PASSWORD_FILE")
        return value.rstrip("/")

    @field_validator("worker_id")
    @classmethod
    def _valid_worker_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r".+:\d+", value.strip()):
            raise ValueError("must be host:port exactly as Connect reports it, e.g. 10.0.0.7:8083")
        return value.strip() if value is not None else None

    @field_validator("password_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            with value.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise ValueError(f"cannot read file {str(value)!r}: {exc.strerror}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # A poll starts every POLL_INTERVAL and may take up to TIMEOUT: two successes can be
        # POLL_INTERVAL + TIMEOUT apart, and readiness would flap "stale" in between.
        if self.poll_interval + self.timeout >= self.max_age:
            raise ValueError(
                f"CONNECT_PROBE_MAX_AGE ({self.max_age:g}) must be greater than "
                f"CONNECT_PROBE_POLL_INTERVAL + CONNECT_PROBE_TIMEOUT "
                f"({self.poll_interval:g} + {self.timeout:g} = "
                f"{self.poll_interval + self.timeout:g}): two successful polls can be that far "
                "apart, and readiness would fail as stale in between"
            )
        if self.connect_url.startswith("http://") and (
            self.ca_file is not None or self.cert_file is not None or not self.verify
        ):
            raise ValueError(
                "CONNECT_PROBE_CA_FILE, CONNECT_PROBE_CERT_FILE and CONNECT_PROBE_VERIFY apply to "
                "https only, but CONNECT_PROBE_CONNECT_URL is http://"
            )
        if self._polls_itself():
            raise ValueError(
                f"CONNECT_PROBE_PORT ({self.port}) is the port of CONNECT_PROBE_CONNECT_URL on "
                "this host: the sidecar would poll itself (Connect listens on another port, "
                "usually 8083)"
            )
        if self.password is not None and self.password_file is not None:
            raise ValueError(
                "set only one of CONNECT_PROBE_PASSWORD and CONNECT_PROBE_PASSWORD_FILE"
            )
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError(
                "CONNECT_PROBE_PASSWORD/CONNECT_PROBE_PASSWORD_FILE needs CONNECT_PROBE_USERNAME"
            )
        if self.username is not None and ":" in self.username:
            raise ValueError("CONNECT_PROBE_USERNAME must not contain ':' (basic auth forbids it)")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("CONNECT_PROBE_KEY_FILE needs CONNECT_PROBE_CERT_FILE")
        if not self.ready_states:
            raise ValueError("CONNECT_PROBE_READY_STATES must name at least one state")
        if set(self.ready_states) & set(self.live_fail_states):
            raise ValueError(
                "CONNECT_PROBE_READY_STATES and CONNECT_PROBE_LIVE_FAIL_STATES overlap"
            )
        return self

    def _polls_itself(self) -> bool:
        parts = urlsplit(self.connect_url)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        default_port = 443 if parts.scheme == "https" else 80
        return local and (parts.port or default_port) == self.port

    # --- derived values ---------------------------------------------------------------------
    def resolved_password(self) -> str | None:
        """The password from PASSWORD or PASSWORD_FILE; read at client build time only."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return None

    def connect_port(self) -> int:
        """The advertised port used for worker-id detection."""
        if self.advertised_port is not None:
            return self.advertised_port
        parts = urlsplit(self.connect_url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def transient_states(self) -> frozenset[str]:
        """States tolerated for TRANSIENT_GRACE unless they are ready states anyway."""
        return TRANSIENT_STATES - set(self.ready_states)

    def public_view(self) -> dict[str, Any]:
        """Effective settings for /status: secrets replaced by whether they are set."""
        view = self.model_dump(mode="json", exclude={"password", "max_unhealthy"})
        view["password"] = "<set>" if self.password is not None else None
        view["max_unhealthy"] = str(self.max_unhealthy)
        return view

    # --- progress checks of sink tasks (issue 14; app/progress/) ----------------------------
    # One block, validated on its own: everything here is inert while KAFKA_BOOTSTRAP_SERVERS
    # is unset (no Kafka client is even imported).
    kafka_bootstrap_servers: str | None = Field(
        None,
        description="Kafka brokers (host:port,...) the sink tasks consume from. Set: progress "
        "checks of this worker's RUNNING sink tasks are on; unset: off, no Kafka client loaded.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to reach the brokers, as the worker's security.protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_PLAINTEXT/SASL_SSL only)."
    )
    kafka_username: str | None = Field(None, description="SASL user name.")
    kafka_password_file: Path | None = Field(
        None, description="File holding the SASL password (a trailing newline is dropped)."
    )
    kafka_ca_file: Path | None = Field(
        None, description="PEM CA bundle to verify the brokers' certificates (SSL, SASL_SSL)."
    )
    kafka_cert_file: Path | None = Field(
        None, description="PEM client certificate for mutual TLS with the brokers."
    )
    kafka_key_file: Path | None = Field(
        None, description="PEM private key of KAFKA_CERT_FILE (unencrypted)."
    )
    progress_interval: PositiveFloat = Field(
        30.0, description="Seconds between two progress reads (a few Kafka requests each)."
    )
    allowed_lag: int = Field(
        0,
        ge=0,
        description="A task whose lag (records, all its partitions) is at most this is "
        "never stalled or behind.",
    )
    stall_window: PositiveFloat = Field(
        600.0,
        description="Seconds a sink task must have lag above ALLOWED_LAG without its committed "
        "offsets moving before it counts as stalled.",
    )
    stall_windows: CommaList = Field(
        (),
        description="Per-connector stall windows, pattern=seconds (INCLUDE's patterns), e.g. "
        "s3-*=3600 for sinks that commit on file rotation. First match wins.",
    )
    progress_exclude: CommaList = Field(
        (), description="Connector name patterns whose progress is never judged."
    )
    not_consuming_grace: NonNegativeFloat = Field(
        120.0,
        description="Seconds a RUNNING sink task may have no member in its consumer group "
        "(rebalance, restart, start-up) before it counts as not consuming.",
    )
    live_fail_on_stall: bool = Field(
        False, description="Also fail /live while a task here is stalled or not consuming."
    )
    auto_restart_stalled: bool = Field(
        False,
        description="Restart stalled / not-consuming sink tasks on this worker, with "
        "AUTO_RESTART's backoff and limits.",
    )

    @field_validator("stall_windows", "progress_exclude", mode="before")
    @classmethod
    def _split_progress_lists(cls, value: object) -> object:
        return split_comma_list(value)

    @field_validator("stall_windows")
    @classmethod
    def _valid_stall_windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from app.progress.windows import parse_stall_window

        for item in value:
            parse_stall_window(item)
        return value

    @field_validator("progress_exclude")
    @classmethod
    def _valid_progress_patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return cls._valid_patterns(value)

    @field_validator("kafka_password_file", "kafka_ca_file", "kafka_cert_file", "kafka_key_file")
    @classmethod
    def _readable_kafka_file(cls, value: Path | None) -> Path | None:
        return cls._readable_file(value)

    @field_validator("kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_mechanism(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _upper_protocol(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _valid_bootstrap(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        servers = [item.strip() for item in value.split(",") if item.strip()]
        for server in servers:
            if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}", server):
                raise ValueError(f"{server!r} is not host:port (e.g. kafka-0.kafka:9092)")
        return ",".join(servers)

    @model_validator(mode="after")
    def _consistent_progress(self) -> Self:
        prefix = ENV_PREFIX
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol in ("SSL", "SASL_SSL")
        if self.kafka_bootstrap_servers is None:
            needing = [
                name
                for name, on in (
                    ("AUTO_RESTART_STALLED", self.auto_restart_stalled),
                    ("LIVE_FAIL_ON_STALL", self.live_fail_on_stall),
                )
                if on
            ]
            if needing:
                raise ValueError(
                    f"{prefix}{needing[0]} needs {prefix}KAFKA_BOOTSTRAP_SERVERS "
                    "(progress checks are off without it)"
                )
            return self
        if sasl and (self.kafka_sasl_mechanism is None or not self.kafka_username):
            raise ValueError(
                f"{prefix}KAFKA_SECURITY_PROTOCOL {self.kafka_security_protocol} needs "
                f"{prefix}KAFKA_SASL_MECHANISM and {prefix}KAFKA_USERNAME"
            )
        if sasl and self.kafka_password_file is None:
            raise ValueError(
                f"{prefix}KAFKA_SECURITY_PROTOCOL {self.kafka_security_protocol} needs "
                f"{prefix}KAFKA_PASSWORD_FILE"
            )
        if not sasl and (self.kafka_sasl_mechanism or self.kafka_username):
            raise ValueError(
                f"{prefix}KAFKA_SASL_MECHANISM/{prefix}KAFKA_USERNAME need "
                f"{prefix}KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL"
            )
        if not tls and (self.kafka_ca_file or self.kafka_cert_file or self.kafka_key_file):
            raise ValueError(
                f"{prefix}KAFKA_CA_FILE/CERT_FILE/KEY_FILE need "
                f"{prefix}KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL"
            )
        if self.stall_window < self.progress_interval:
            raise ValueError(
                f"{prefix}STALL_WINDOW ({self.stall_window:g}) must be at least "
                f"{prefix}PROGRESS_INTERVAL ({self.progress_interval:g}): a window holds reads"
            )
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            raise ValueError(f"{prefix}KAFKA_CERT_FILE and {prefix}KAFKA_KEY_FILE go together")
        return self

    def kafka_password(self) -> str | None:
        """The SASL password from KAFKA_PASSWORD_FILE; read when the Kafka client is built."""
        if self.kafka_password_file is None:
            return None
        return self.kafka_password_file.read_text(encoding="utf-8").rstrip("\r\n")
