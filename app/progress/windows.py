"""STALL_WINDOWS (``pattern=seconds``) and the per-connector window lookup. Pure; no Kafka client.

Patterns are INCLUDE's (a glob, or ``re:REGEX`` matched against the whole name). The first
pattern that matches a connector decides its window; none matching means STALL_WINDOW.
"""

import math
from collections.abc import Iterable

from app.selection import _compile


def parse_stall_window(item: str) -> tuple[str, float]:
    """``"s3-*=3600"`` -> ``("s3-*", 3600.0)``; raises ``ValueError`` with a readable message."""
    pattern, sep, seconds = item.rpartition("=")
    pattern = pattern.strip()
    if not sep or not pattern:
        raise ValueError(f"{item!r} is not pattern=seconds (e.g. s3-sink-*=3600)")
    try:
        value = float(seconds.strip())
    except ValueError:
        raise ValueError(f"{item!r}: {seconds.strip()!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{item!r}: the window must be a positive number of seconds")
    if pattern.startswith("re:"):
        import re

        try:
            re.compile(pattern[3:])
        except re.error as exc:
            raise ValueError(f"bad regular expression {pattern[3:]!r}: {exc}") from None
    return pattern, value


class StallWindows:
    """Each connector's stall window: the first matching STALL_WINDOWS entry, or the default."""

    def __init__(self, default: float, entries: Iterable[str]) -> None:
        self.default = default
        parsed = [parse_stall_window(item) for item in entries]
        self._patterns = [(_compile(pattern), seconds) for pattern, seconds in parsed]
        self.entries = tuple(parsed)
        self._memo: dict[str, float] = {}

    def window(self, connector: str) -> float:
        found = self._memo.get(connector)
        if found is None:
            found = next(
                (seconds for regex, seconds in self._patterns if regex.fullmatch(connector)),
                self.default,
            )
            if len(self._memo) > 100_000:
                self._memo.clear()
            self._memo[connector] = found
        return found

    @property
    def longest(self) -> float:
        return max([self.default, *(seconds for _, seconds in self.entries)])
