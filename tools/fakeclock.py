"""A ``Clock`` (``app.clock``) whose time moves only when told to, for in-process tests."""

import asyncio


class FakeClock:
    """Monotonic and wall time that move only when told to."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_790_000_000.0) -> None:
        self._mono = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._mono + self._wall_offset

    def advance(self, seconds: float) -> None:
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        """Time passes at once; the task still yields, as a real sleep would."""
        self.sleeps.append(seconds)
        self._mono += max(0.0, seconds)
        await asyncio.sleep(0)
