"""Connector configurations used by the tests and the demo."""

from __future__ import annotations

from pathlib import Path

FILE_SOURCE = "org.apache.kafka.connect.file.FileStreamSourceConnector"
FILE_SINK = "org.apache.kafka.connect.file.FileStreamSinkConnector"
FAILING_SOURCE = "probe.testplugin.FailingSourceConnector"  # java/plugin/


def file_source(file: Path, topic: str) -> dict[str, str]:
    """Reads lines of ``file`` into ``topic`` (a missing file is retried, not a failure)."""
    return {"connector.class": FILE_SOURCE, "file": str(file), "topic": topic, "tasks.max": "1"}


def file_sink(file: Path, topics: str) -> dict[str, str]:
    """Writes ``topics`` to ``file``; its task FAILS at start when the directory is missing."""
    return {"connector.class": FILE_SINK, "file": str(file), "topics": topics, "tasks.max": "1"}


def failing_source(
    *,
    tasks: int = 1,
    fail_connector: bool = False,
    fail_task: bool = False,
    fail_task_on_worker: str = "",
) -> dict[str, str]:
    """The test plugin: FAILED connector (``fail_connector``), FAILED tasks (``fail_task``, or
    only the tasks running on worker ``fail_task_on_worker``), otherwise idle RUNNING tasks."""
    return {
        "connector.class": FAILING_SOURCE,
        "tasks.max": str(tasks),
        "fail.connector": str(fail_connector).lower(),
        "fail.task": str(fail_task).lower(),
        "fail.task.on.worker": fail_task_on_worker,
    }
