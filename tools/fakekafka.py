"""Readers that misbehave the way a C Kafka client can, for app/progress/isolated.py's tests."""

import os
import time
from collections.abc import Sequence

from app.progress.rules import GroupRead, KafkaRead


class MisbehavingReader:
    """Group "abort" aborts the process (as librdkafka's assertions do), "hang" never answers;
    any other group reads as an empty group."""

    def __init__(self, settings: object) -> None:
        self.pid = os.getpid()

    def read(self, groups: Sequence[str], timeout: float) -> KafkaRead:
        if "abort" in groups:
            os.abort()
        if "hang" in groups:
            time.sleep(3600)
        return KafkaRead(
            {group: GroupRead(group, (), {}, f"pid {self.pid}") for group in groups}, {}
        )
