"""Which sink tasks run on this worker, and the consumer group each connector's tasks join.

The group is ``connect-<name>`` unless the connector sets ``consumer.override.group.id``. That
one value is read from ``GET /connectors/{name}/config`` by a decoder that knows no other field:
the rest of the configuration (which may hold credentials) is never kept, logged or shown.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from app.connect.client import ConnectClient, ConnectError, path_segment
from app.logs import safe
from app.progress.config import ProgressConfig
from app.progress.rules import TaskRef
from app.rules import Rules
from app.states import RUNNING
from app.tracking import Tracked

logger = logging.getLogger(__name__)

SINK: Final = "sink"
# Group ids are re-read this often (a connector's config rarely changes, and a change of
# group id restarts its tasks anyway) and at most this many per progress read.
GROUP_REFRESH_SECONDS: Final = 600.0
GROUP_READS_PER_CYCLE: Final = 200
GROUP_READ_CONCURRENCY: Final = 4


class _GroupOverride(msgspec.Struct, frozen=True):
    """The only config value ever decoded; msgspec skips every other key unread."""

    group_id: str | None = msgspec.field(name="consumer.override.group.id", default=None)


_override_decoder = msgspec.json.Decoder(_GroupOverride)


def default_group(connector: str) -> str:
    """``SinkUtils.consumerGroupId``."""
    return f"connect-{connector}"


def sink_tasks_here(
    tracked: Mapping[str, Tracked], rules: Rules, config: ProgressConfig
) -> tuple[list[tuple[str, int, str]], int]:
    """``(connector, task, worker_id)`` of RUNNING sink tasks on this worker that are judged,
    and how many RUNNING source tasks here are not (their progress is out of scope)."""
    mine = rules.identity.matches  # this worker, whatever SCOPE says
    found: list[tuple[str, int, str]] = []
    sources = 0
    for name, entry in tracked.items():
        status = entry.status
        if not rules.selector.selected(name):
            continue
        here = [t for t in status.tasks if t.state == RUNNING and mine(t.worker_id)]
        if status.type != SINK:
            sources += len(here)
            continue
        if not config.judged(name):
            continue
        found.extend((name, task.id, task.worker_id) for task in here)
    return found, sources


class GroupIds:
    """Each judged sink connector's consumer group id, read from its config and cached."""

    def __init__(self, client: ConnectClient) -> None:
        self._client = client
        self._known: dict[str, tuple[str, float]] = {}  # connector -> (group, read at)

    def get(self, connector: str) -> str | None:
        entry = self._known.get(connector)
        return entry[0] if entry is not None else None

    async def refresh(self, connectors: Iterable[str], now: float) -> None:
        """Read the group ids not known yet (first) or older than GROUP_REFRESH_SECONDS, a
        bounded number per call; forget connectors no longer listed."""
        wanted = set(connectors)
        for name in [name for name in self._known if name not in wanted]:
            del self._known[name]
        due = sorted(
            (self._known[name][1] if name in self._known else -1.0, name)
            for name in wanted
            if name not in self._known or now - self._known[name][1] >= GROUP_REFRESH_SECONDS
        )[:GROUP_READS_PER_CYCLE]
        limiter = asyncio.Semaphore(GROUP_READ_CONCURRENCY)

        async def one(name: str) -> None:
            async with limiter:
                group = await self._read(name)
            if group is not None:
                self._known[name] = (group, now)

        await asyncio.gather(*(one(name) for _, name in due))

    async def _read(self, name: str) -> str | None:
        path = f"/connectors/{path_segment(name)}/config"
        try:
            raw = await self._client.get(path)
            self._client.raise_for_status(path, raw)
            override = _override_decoder.decode(raw.body)
        except ConnectError as exc:
            logger.debug("reading the group id of %s failed: %s", safe(name), safe(exc.message))
            return None
        except (msgspec.DecodeError, UnicodeDecodeError):
            # Never the body itself in the message: it is the connector's configuration.
            logger.debug("GET %s answered something that is not a config object", safe(path))
            return None
        group = override.group_id.strip() if override.group_id else ""
        return group or default_group(name)


def task_refs(tasks: Iterable[tuple[str, int, str]], groups: GroupIds) -> list[TaskRef]:
    return [TaskRef(name, task, worker, groups.get(name)) for name, task, worker in tasks]
