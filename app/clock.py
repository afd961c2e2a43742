"""Time, injectable: the poller and the verdicts read it only through a ``Clock``."""

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic time for durations and deadlines; wall time only for display."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
