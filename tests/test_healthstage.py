"""Which unhealthy ``/health`` messages mean "waiting on Kafka" (``app.connect.healthstage``)."""

import pytest

from app.connect.healthstage import kafka_stage

PREFIX = "Worker was unable to handle this request and may be unable to handle other requests. "


@pytest.mark.parametrize(
    "stage",
    [
        # Seen on real 3.9.2 / 4.3.1 workers with their broker frozen (SIGSTOP) or killed.
        "flushing updates to the status topic",
        "ensuring membership in the cluster",
        "reading to the end of the config topic",
        "initializing and reading to the end of internal topics",
        "polling the group coordinator for up to 2147483647ms or until interrupted",
        "reclaiming write privileges for the config topic",
        "writing a new session key to the config topic",
        "writing a config for connector orders-sink to the config topic",
        "stopping 3 and 3 tasks",  # 4.3.1's text, verbatim
        "stopping 3 connectors and 3 tasks",
    ],
)
def test_stages_that_wait_on_kafka(stage: str) -> None:
    message = f"{PREFIX}The worker is currently {stage}, which began at 2026-11-29T23:25:45.622Z."
    assert kafka_stage(message) == stage


@pytest.mark.parametrize(
    "message",
    [
        f"{PREFIX}The worker is currently starting the connector, which began at x.",
        f"{PREFIX}The worker is currently generating task configs for connector orders-sink, "
        "which began at 2026-11-29T00:00:00Z.",
        f"{PREFIX}The worker is currently experiencing a simulated failure for testing purposes, "
        "which began at 1970-01-01T00:00:00Z.",
        f"{PREFIX}The worker is currently stopping connector orders-sink, which began at x.",
        "herder is stuck",
        "",
    ],
)
def test_other_stages_are_not_kafka(message: str) -> None:
    assert kafka_stage(message) is None
