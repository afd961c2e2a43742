"""The Kafka reader: consumer groups, committed and log-end offsets in a few batched requests.

confluent-kafka (librdkafka) because it is the one well-kept Python client whose admin API gives
typed group members (client id, host, assignment), committed offsets and ``list_offsets`` of the
latest/earliest offsets, with SASL PLAIN/SCRAM and TLS inside its manylinux wheels (see
README "Progress checks"). Its admin calls block on ``concurrent.futures``: ``read`` runs in the
progress loop's own thread, never on the event loop, and every request carries a deadline.

Imported only when KAFKA_BOOTSTRAP_SERVERS is set (``app.progress.wiring``): with progress checks
off the sidecar never loads librdkafka (about 4 MB of RSS).

Per read, with G groups and P assigned partitions: one DescribeGroups per group coordinator,
G OffsetFetch (librdkafka takes one group per call; they are sent concurrently), and one or two
ListOffsets per partition leader — independent of the probe rate.
"""

import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported for type checkers

from app.progress.reading import KafkaUnavailable
from app.progress.rules import GroupRead, KafkaRead, Member
from app.settings import Settings

logger = logging.getLogger(__name__)

CLIENT_ID: Final = "kafka-connect-probe"
# librdkafka error codes that mean "this group does not exist (any more)": no members, no offsets.
_NO_GROUP: Final = frozenset({KafkaError.GROUP_ID_NOT_FOUND})


_LATEST: Final[OffsetSpec] = OffsetSpec.latest()  # type: ignore[no-untyped-call]
_EARLIEST: Final[OffsetSpec] = OffsetSpec.earliest()  # type: ignore[no-untyped-call]


class _LibrdkafkaLog:
    """librdkafka's own log lines at DEBUG: a broker that is down would otherwise log a line per
    reconnect attempt; the progress loop logs the outcome once per change instead."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("app.progress.librdkafka")

    def log(self, level: int, fmt: str, *args: object) -> None:
        self._logger.debug(fmt, *args)


def client_config(
    settings: Settings, on_error: Callable[[KafkaError], None] | None = None
) -> dict[str, Any]:
    """The admin client's configuration, like the worker's own clients' security settings."""
    assert settings.kafka_bootstrap_servers is not None
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": CLIENT_ID,
        "security.protocol": settings.kafka_security_protocol,
        "socket.timeout.ms": 10_000,
        "reconnect.backoff.max.ms": 10_000,
        "logger": _LibrdkafkaLog(),
    }
    if on_error is not None:
        config["error_cb"] = on_error
    if settings.kafka_security_protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_username
        config["sasl.password"] = settings.kafka_password()
    if settings.kafka_ca_file is not None:
        config["ssl.ca.location"] = str(settings.kafka_ca_file)
    if settings.kafka_cert_file is not None:
        config["ssl.certificate.location"] = str(settings.kafka_cert_file)
    if settings.kafka_key_file is not None:
        config["ssl.key.location"] = str(settings.kafka_key_file)
    return config


def _error_text(error: BaseException) -> str:
    """A short cause: librdkafka's error string (no credentials in it), or the exception type."""
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        text = str(error.args[0].str())
    elif isinstance(error, concurrent.futures.TimeoutError):
        text = "no answer in time"
    else:
        text = type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _code(error: BaseException) -> int | None:
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        code = error.args[0].code()
        return int(code) if code is not None else None
    return None


class KafkaReader:
    """Blocking reads through one long-lived admin client (built on first use, rebuilt after a
    configuration failure). One read at a time: the progress loop never overlaps them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: AdminClient | None = None
        self._last_error: str | None = None  # the client's latest error callback (its thread)

    def _on_error(self, error: KafkaError) -> None:
        self._last_error = str(error.str())[:300]

    def _client(self) -> AdminClient:
        if self._admin is None:
            try:
                self._admin = AdminClient(client_config(self._settings, self._on_error))
            except (KafkaException, ValueError, TypeError) as exc:
                raise KafkaUnavailable(
                    f"cannot build the Kafka client: {_error_text(exc)}"
                ) from None
        return self._admin

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        """Describe ``groups``, fetch their committed offsets, then the log-end offsets of every
        assigned partition (and log-start offsets of those never committed)."""
        if not groups:
            return KafkaRead({}, {})
        admin = self._client()
        try:
            return self._read(admin, groups, timeout)
        finally:
            # Serves queued log lines and error callbacks: with a ``logger`` set, librdkafka
            # queues them for poll(), and nothing else ever polls an admin client.
            admin.poll(0)

    def _read(self, admin: AdminClient, groups: Sequence[str], timeout: float) -> KafkaRead:
        self._last_error = None
        # The futures get a second beyond the requests' own deadline, so a request that fails
        # (authentication, no leader) reports its error rather than a bare timeout.
        deadline = time.monotonic() + timeout + 1.0

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        described = admin.describe_consumer_groups(list(groups), request_timeout=timeout)
        fetched = {
            group: admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout
            )[group]
            for group in groups
        }
        reads: dict[str, GroupRead] = {}
        errors: dict[str, str] = {}
        first_error: BaseException | None = None
        for group in groups:
            members: tuple[Member, ...] = ()
            state = ""
            try:
                description = described[group].result(timeout=left())
                members = tuple(
                    Member(
                        member.member_id,
                        member.client_id,
                        member.host,
                        tuple(
                            (tp.topic, tp.partition)
                            for tp in (
                                member.assignment.topic_partitions if member.assignment else []
                            )
                        ),
                    )
                    for member in description.members
                )
                state = str(getattr(description.state, "name", description.state))
            except (KafkaException, concurrent.futures.TimeoutError) as exc:
                if _code(exc) not in _NO_GROUP:
                    errors[group] = _error_text(exc)
                    first_error = first_error or exc
                    continue
            try:
                offsets = fetched[group].result(timeout=left())
                committed = {
                    (tp.topic, tp.partition): tp.offset
                    for tp in (offsets.topic_partitions or [])
                    if tp.offset >= 0 and tp.error is None
                }
            except (KafkaException, concurrent.futures.TimeoutError) as exc:
                if _code(exc) not in _NO_GROUP:
                    errors[group] = _error_text(exc)
                    first_error = first_error or exc
                    continue
                committed = {}
            reads[group] = GroupRead(group, members, committed, state)
        if not reads and first_error is not None:
            cause = _error_text(first_error)
            admin.poll(0)  # serves the error callback (authentication, connection refused)
            if self._last_error and self._last_error not in cause:
                cause += f" (client error: {self._last_error})"
            raise KafkaUnavailable(cause)

        assigned = {tp for read in reads.values() for m in read.members for tp in m.partitions}
        ends = self._offsets(admin, assigned, _LATEST, left())
        uncommitted = {
            tp
            for read in reads.values()
            for m in read.members
            for tp in m.partitions
            if tp not in read.committed
        }
        starts = self._offsets(admin, uncommitted, _EARLIEST, left())
        return KafkaRead(reads, ends, starts, errors)

    @staticmethod
    def _offsets(
        admin: AdminClient, partitions: set[tuple[str, int]], spec: OffsetSpec, timeout: float
    ) -> Mapping[tuple[str, int], int]:
        """One ListOffsets per leader; partitions whose answer fails are left out (their tasks
        read as unknown)."""
        if not partitions:
            return {}
        deadline = time.monotonic() + timeout
        futures = admin.list_offsets(
            {TopicPartition(topic, partition): spec for topic, partition in partitions},
            request_timeout=timeout,
        )
        found: dict[tuple[str, int], int] = {}
        for tp, future in futures.items():
            try:
                info = future.result(timeout=max(0.1, deadline - time.monotonic()))
            except (KafkaException, concurrent.futures.TimeoutError):
                continue
            found[(tp.topic, tp.partition)] = int(info.offset)
        return found
