"""Logging set-up shared with uvicorn: text or JSON lines on stdout, no access log.

Values that come from Connect (connector names, traces, worker ids) pass through ``safe`` before
they reach a text log line, so a name holding a newline or an escape sequence cannot forge lines.
"""

import json
import logging
import logging.config
import time
from typing import Any

_SAFE_LIMIT = 300


def safe(value: object, limit: int = _SAFE_LIMIT) -> str:
    """Printable, single-line, bounded rendering of untrusted text."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (+ exception type and text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


class RepeatThrottle(logging.Filter):
    """At most one "Invalid HTTP request received." per minute: anyone who can reach the port
    could otherwise write a log line per malformed request (uvicorn logs each at WARNING)."""

    MESSAGE = "Invalid HTTP request received."

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self._interval = interval
        self._last = -interval
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE:
            return True
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return False
        if self._suppressed:
            record.msg = f"{self.MESSAGE} ({self._suppressed} more in the last minute not logged)"
        self._last, self._suppressed = now, 0
        return True


def logging_config(level: str, fmt: str, stream: str = "ext://sys.stdout") -> dict[str, Any]:
    """A ``dictConfig`` for our loggers and uvicorn's; httpx kept quiet (it logs every request)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "filters": {"throttle": {"()": RepeatThrottle}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "stream": stream,
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level, "propagate": False},
            "uvicorn.error": {
                "handlers": ["stdout"],
                "level": level,
                "propagate": False,
                "filters": ["throttle"],
            },
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure_logging(level: str, fmt: str, stream: str = "ext://sys.stdout") -> None:
    logging.config.dictConfig(logging_config(level, fmt, stream))
