"""The ``Date`` header, computed when an answer is sent and cached for the second it names.

RFC 9110 §6.6.1 wants ``Date`` on 2xx/4xx answers from a server with a clock. Stock uvicorn
keeps it fresh with a 10 Hz timer (the wake-up this sidecar removed, see app/serving/server.py);
here it is refreshed when a request head completes, so an idle sidecar never wakes up for it.
"""

import time
from email.utils import formatdate
from typing import Final

_cached_second: int = -1
_cached: list[tuple[bytes, bytes]] = []
DATE: Final = b"date"


def date_headers() -> list[tuple[bytes, bytes]]:
    """``[(b"date", b"Sun, 29 Nov 2026 23:59:59 GMT")]`` for now; the same list within a second."""
    global _cached_second, _cached
    now = time.time()
    second = int(now)
    if second != _cached_second:
        _cached = [(DATE, formatdate(second, usegmt=True).encode("ascii"))]
        _cached_second = second
    return _cached
