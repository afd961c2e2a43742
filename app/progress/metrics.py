"""The progress checks' series, computed at scrape time from the latest ``ProgressView``.

Bounded per task, never per partition: ``kafka_connect_task_lag{connector,task}`` (records) and
the state set ``kafka_connect_task_progress{connector,task,state}``, for this worker's RUNNING
sink tasks only, so each series comes from exactly one sidecar. ``connect_probe_kafka_up`` is
absent until the first read that had a group to read.
"""

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from app.progress.loop import ProgressView
from app.progress.rules import PROGRESS_STATES

TASK_LAG: Final = "kafka_connect_task_lag"
TASK_PROGRESS: Final = "kafka_connect_task_progress"
KAFKA_UP: Final = "connect_probe_kafka_up"
READ_DURATION: Final = "connect_probe_progress_read_duration_seconds"
STALL_RESTARTS: Final = "connect_probe_stall_restarts"  # exported with _total
# A read is milliseconds to a few seconds; its deadline is at most 10 s (+5 s of slack).
READ_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


class ProgressCollector:
    """Reads an immutable view (a reference swap on the loop), so it is safe in a thread."""

    def __init__(
        self,
        view_source: Callable[[], ProgressView],
        restarts_source: Callable[[], Mapping[tuple[str, str], int] | None],
    ) -> None:
        self._view_source = view_source
        self._restarts_source = restarts_source

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(TASK_LAG, "", labels=("connector", "task"))
        yield GaugeMetricFamily(TASK_PROGRESS, "", labels=("connector", "task", "state"))
        yield GaugeMetricFamily(KAFKA_UP, "")
        yield CounterMetricFamily(STALL_RESTARTS, "", labels=("connector", "result"))

    def collect(self) -> Iterator[Metric]:
        view = self._view_source()
        if view.kafka_up is not None:
            yield GaugeMetricFamily(
                KAFKA_UP,
                "1 when the latest progress read got an answer from Kafka.",
                value=float(view.kafka_up),
            )
        lag = GaugeMetricFamily(
            TASK_LAG,
            "Records waiting for a RUNNING sink task on this worker (all its partitions), as of "
            "the latest progress read; absent while unknown.",
            labels=("connector", "task"),
        )
        progress = GaugeMetricFamily(
            TASK_PROGRESS,
            "Progress verdict of a RUNNING sink task on this worker: 1 for the current state "
            "(ok, idle, behind, stalled, not_consuming, unknown), 0 for the others.",
            labels=("connector", "task", "state"),
        )
        for (connector, task), verdict in sorted(view.verdicts.items()):
            labels = (connector, str(task))
            if verdict.lag is not None:
                lag.add_metric(labels, float(verdict.lag))
            for state in PROGRESS_STATES:
                progress.add_metric((*labels, state), 1.0 if verdict.state == state else 0.0)
        yield lag
        yield progress
        restarts = self._restarts_source()
        if restarts is not None:
            family = CounterMetricFamily(
                STALL_RESTARTS,
                "AUTO_RESTART_STALLED attempts per connector by result (as "
                "connect_probe_restarts_total).",
                labels=("connector", "result"),
            )
            for (connector, result), count in sorted(restarts.items()):
                family.add_metric((connector, result), float(count))
            yield family
