"""Connect's status listing decoded one connector at a time, keeping only what anybody reads.

Why per connector: the listing is cluster-wide, so one odd entry (a ``null`` worker_id, an ``id``
given as a string) must be that connector's problem, not a failed poll on every worker at once.
Why slim: a mass failure (thousands of tasks FAILED with 10 KB traces) is exactly when the sidecar
must not grow. Probe bodies show a trace's first line only, so that is all that is kept unless
EXPOSE_TRACES asks for more, and then within a fixed budget per poll. The body is decoded in place
(``msgspec.Raw`` views into it, no copy) and each entry's full traces live only while that entry is
decoded.
"""

from collections.abc import Callable, Mapping
from sys import intern
from typing import Any, Final

import msgspec

from app.connect.models import (
    ConnectorStatus,
    ExpandedEntry,
    InstanceStatus,
    MalformedStatus,
    TaskStatus,
)

# Longest first line of a trace kept (probe bodies cut to this too).
FIRST_LINE_CHARS: Final = 300
# With EXPOSE_TRACES: the longest trace kept, and all kept traces of one poll together.
EXPOSED_TRACE_CHARS: Final = 4 * 1024
EXPOSED_TRACES_BUDGET: Final = 16 * 1024 * 1024
# Longest decode error quoted in a reason.
ERROR_CHARS: Final = 300

_listing_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[str])
_entry_decoder = msgspec.json.Decoder(ExpandedEntry)
_status_decoder = msgspec.json.Decoder(ConnectorStatus)
# Salvaging worker ids from a malformed entry: any JSON, shallow enough not to recurse deeply.
_any_decoder = msgspec.json.Decoder()


def first_line(trace: str | None, limit: int = FIRST_LINE_CHARS) -> str | None:
    """A trace's first line: what probe bodies show (traces can hold host names and data)."""
    if not trace:
        return None
    line = trace.strip().split("\n", 1)[0].strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_error(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


class TraceKeeper:
    """Decides how much of each trace one poll keeps (see the module doc)."""

    __slots__ = ("_budget", "_expose")

    def __init__(self, expose: bool) -> None:
        self._expose = expose
        self._budget = EXPOSED_TRACES_BUDGET

    def keep(self, trace: str) -> str:
        if self._expose and self._budget > 0:
            kept = trace if len(trace) <= EXPOSED_TRACE_CHARS else trace[:EXPOSED_TRACE_CHARS]
            self._budget -= len(kept)
            return kept
        return first_line(trace) or ""

    def slim(self, status: ConnectorStatus) -> ConnectorStatus:
        """``status`` rebuilt compact: traces cut, and the few distinct states, worker ids and
        types shared (``sys.intern``) instead of one copy per object per poll."""
        conn = status.connector
        return ConnectorStatus(
            InstanceStatus(
                intern(conn.state),
                intern(conn.worker_id),
                None if conn.trace is None else self.keep(conn.trace),
            ),
            tuple(
                TaskStatus(
                    task.id,
                    intern(task.state),
                    intern(task.worker_id),
                    None if task.trace is None else self.keep(task.trace),
                )
                for task in status.tasks
            ),
            intern(status.type),
        )


def decode_listing(body: bytes | bytearray) -> dict[str, msgspec.Raw] | list[str]:
    """The outer ``?expand=status`` object as raw entries (or a legacy name list).

    Raises ``msgspec.ValidationError`` / ``msgspec.DecodeError`` when the answer as a whole is not
    a listing: that is a failed poll, unlike one bad entry.
    """
    listing: dict[str, msgspec.Raw] | list[str] = _listing_decoder.decode(body)
    return listing


Known = Callable[[str], ConnectorStatus | None]


def _nothing_known(name: str) -> None:
    return None


def decode_entries(
    raw_entries: Mapping[str, msgspec.Raw], keeper: TraceKeeper, known: Known = _nothing_known
) -> tuple[dict[str, ConnectorStatus], dict[str, MalformedStatus]]:
    """Each entry decoded on its own; a bad one lands in the second dict, not in an exception.

    ``known(name)``: the status already held for ``name``; when the new one equals it, the held
    object is returned and the fresh duplicate dies at once (never two full generations).
    """
    connectors: dict[str, ConnectorStatus] = {}
    malformed: dict[str, MalformedStatus] = {}
    for name, raw in raw_entries.items():
        try:
            decoded = _entry_decoder.decode(raw).status
        except (msgspec.DecodeError, RecursionError) as exc:  # ValidationError is a DecodeError
            malformed[name] = MalformedStatus(
                describe_error(exc), tuple(_salvage_worker_ids(raw, ("status",)))
            )
            continue
        held = known(name)
        if held is not None and _same(held, decoded):
            connectors[name] = held
        else:
            connectors[name] = keeper.slim(decoded)
    return connectors, malformed


def _same(held: ConnectorStatus, decoded: ConnectorStatus) -> bool:
    """Equal once ``decoded``'s traces are cut like ``held``'s (traces compare by first line)."""
    if held == decoded:
        return True
    return held == TraceKeeper(expose=False).slim(decoded) if _has_trace(held) else False


def _has_trace(status: ConnectorStatus) -> bool:
    return status.connector.trace is not None or any(t.trace is not None for t in status.tasks)


def decode_status(
    body: bytes | bytearray, keeper: TraceKeeper
) -> ConnectorStatus | MalformedStatus:
    """One ``GET /connectors/{name}/status`` body (workers older than 2.3)."""
    try:
        return keeper.slim(_status_decoder.decode(body))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return MalformedStatus(describe_error(exc), tuple(_salvage_worker_ids(body, ())))


def _salvage_worker_ids(raw: msgspec.Raw | bytes | bytearray, path: tuple[str, ...]) -> list[str]:
    """The string ``worker_id`` values of a malformed entry, in order, without duplicates."""
    try:
        value: Any = _any_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return []
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    objects: list[Any] = [value.get("connector")]
    tasks = value.get("tasks")
    if isinstance(tasks, list):
        objects.extend(tasks)
    for obj in objects:
        worker = obj.get("worker_id") if isinstance(obj, dict) else None
        if isinstance(worker, str) and worker not in found:
            found.append(worker[:200])
    return found
