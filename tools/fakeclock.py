"""A ``Clock`` (``app.clock``) whose time moves only when told to, for in-process tests."""

import asyncio


class FakeClock:
    """Monotonic and wall time that move only when told to."""

    def __init__(
        self, start: float = 1000.0, wall_start: float = 1_790_000_000.0, *, instant: bool = True
    ) -> None:
        """``instant``: ``sleep`` moves time itself and returns at once (a loop runs flat out,
        each sleep recorded); otherwise ``sleep`` waits until ``advance`` reaches its end (a
        loop runs once, then as the test moves time; ``advance`` on the sleeper's event loop)."""
        self._mono = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []
        self.instant = instant
        self._moved: asyncio.Event | None = None

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._mono + self._wall_offset

    def advance(self, seconds: float) -> None:
        self._mono += seconds
        if self._moved is not None:  # wake the sleepers; each checks its own deadline
            self._moved.set()
            self._moved = None

    async def sleep(self, seconds: float) -> None:
        """Instant: time passes at once, the task still yields as a real sleep would.
        Otherwise: wait for ``advance`` to reach the end of the sleep."""
        self.sleeps.append(seconds)
        if self.instant:
            self._mono += max(0.0, seconds)
            await asyncio.sleep(0)
            return
        deadline = self._mono + max(0.0, seconds)
        while self._mono < deadline:
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()
