"""The settings the progress checks read, pre-computed once (patterns compiled, windows parsed)."""

from dataclasses import dataclass

from app.progress.windows import StallWindows
from app.selection import ConnectorSelector
from app.settings import Settings

# One Kafka read never takes longer than this, whatever PROGRESS_INTERVAL is: a slow broker
# must leave time for the next read, and a read is a handful of small requests.
MAX_READ_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ProgressConfig:
    """What judging and reading need; built from ``Settings`` by ``from_settings``."""

    interval: float
    allowed_lag: int
    windows: StallWindows
    excluded: ConnectorSelector  # selected() == True means "excluded by PROGRESS_EXCLUDE"
    not_consuming_grace: float
    live_fail_on_stall: bool
    auto_restart_stalled: bool
    read_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "ProgressConfig":
        return cls(
            interval=settings.progress_interval,
            allowed_lag=settings.allowed_lag,
            windows=StallWindows(settings.stall_window, settings.stall_windows),
            excluded=ConnectorSelector(settings.progress_exclude or ("re:(?!)",), ()),
            not_consuming_grace=settings.not_consuming_grace,
            live_fail_on_stall=settings.live_fail_on_stall,
            auto_restart_stalled=settings.auto_restart_stalled,
            read_timeout=min(MAX_READ_TIMEOUT, max(1.0, settings.progress_interval / 2)),
        )

    def judged(self, connector: str) -> bool:
        """False for connectors switched off by PROGRESS_EXCLUDE."""
        return not self.excluded.selected(connector)
