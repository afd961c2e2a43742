"""Keep the resident set flat on glibc after large polls.

A 4 MB answer at 10,000 connectors is read into one buffer. glibc raises its mmap threshold after
such a buffer is freed, so the next ones come from the heap and stay resident; and a poll that
replaces the snapshot leaves free heap pages behind. Pinning the threshold and trimming after a
changed poll returns that memory to the system. Elsewhere (musl, macOS) these are no-ops.
"""

import ctypes
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 128 * 1024


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        _ = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def pin_mmap_threshold() -> None:
    """Large buffers always mmap'd, so freeing them always unmaps them."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def trimmer() -> Callable[[int], None]:
    """A function to call with each published state's generation; trims when it changed."""
    libc = _glibc()
    last = -1

    def trim(generation: int) -> None:
        nonlocal last
        if libc is not None and generation != last:
            last = generation
            libc.malloc_trim(0)

    return trim
