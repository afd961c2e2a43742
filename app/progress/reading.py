"""What the progress loop needs from a Kafka reader, so tests can hand it a fake one."""

from collections.abc import Sequence
from typing import Protocol

from app.progress.rules import KafkaRead


class KafkaUnavailable(Exception):
    """Kafka could not be read at all; the message names the cause, never a secret."""


class Reader(Protocol):
    """Blocking: called in the progress loop's own thread, never on the event loop."""

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead: ...
