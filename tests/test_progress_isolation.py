"""The Kafka client runs in a child process: its crash or hang is a failed read, nothing more."""

import os

import pytest

from app.progress.isolated import IsolatedReader
from app.progress.reading import KafkaUnavailable
from app.settings import Settings

pytestmark = pytest.mark.process  # child processes

FACTORY = "tools.fakekafka:MisbehavingReader"


def test_a_child_that_aborts_is_a_failed_read_and_the_next_read_gets_a_new_child() -> None:
    reader = IsolatedReader(Settings(kafka_bootstrap_servers="127.0.0.1:1"), FACTORY)
    try:
        first = reader.read(["orders"], timeout=5).groups["orders"].state
        assert first.startswith("pid ")
        assert first != f"pid {os.getpid()}"  # not read in this process
        with pytest.raises(KafkaUnavailable, match="process ended during the read"):
            reader.read(["abort"], timeout=5)
        second = reader.read(["orders"], timeout=5).groups["orders"].state
        assert second != first  # a fresh child
        assert reader.restarts == 1
    finally:
        reader.close()


def test_a_child_that_hangs_is_stopped_after_the_deadline() -> None:
    reader = IsolatedReader(Settings(kafka_bootstrap_servers="127.0.0.1:1"), FACTORY, slack=3.0)
    try:
        reader.read(["warm-up"], timeout=5)  # the child's start is not part of the deadline below
        with pytest.raises(KafkaUnavailable, match=r"did not answer within 3\.5s"):
            reader.read(["hang"], timeout=0.5)
        assert reader.read(["orders"], timeout=5).groups["orders"].members == ()
    finally:
        reader.close()
