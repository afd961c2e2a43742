"""The memory envelope: how large a Connect answer the sidecar agrees to read, given its limit.

What the sidecar holds is small and bounded by what Connect reports (first-line traces, statuses
reused while unchanged); the one large thing is the answer being read. So peak memory is a
baseline plus a multiple of the largest answer read, and the cap follows the container's limit.
(The image also sets glibc's mmap threshold with GLIBC_TUNABLES, so a large answer's buffer is
mmap'd and given back whole when freed, instead of raising the threshold and staying resident.)
"""

from pathlib import Path
from typing import Final

MiB: Final = 1024 * 1024
# The memory envelope (README "Memory"): peak RSS ~ BASELINE + PER_BODY_BYTE x the largest answer
# read (the body itself, its decoded entries one batch at a time, allocator slack), measured by
# `make bench` with every task FAILED and a 10 KB trace each. A cap derived from the container's
# limit keeps that peak within ENVELOPE of the limit.
ENVELOPE: Final = 0.75
BASELINE_BYTES: Final = 80 * MiB
PER_BODY_BYTE: Final = 1.25
LARGEST_CAP: Final = 64 * MiB
SMALLEST_CAP: Final = 1 * MiB
CGROUP_LIMIT_FILES: Final = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
UNLIMITED_ABOVE: Final = 1 << 60  # v1 reports "no limit" as a huge number


def container_memory_limit(files: tuple[Path, ...] = CGROUP_LIMIT_FILES) -> int | None:
    """The container's memory limit in bytes from its cgroup, or None when there is none."""
    for path in files:
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text == "max":
            return None
        if text.isdigit():
            value = int(text)
            return value if 0 < value < UNLIMITED_ABOVE else None
    return None


def envelope_cap(limit: int | None) -> int:
    """The largest Connect answer that keeps peak RSS within ENVELOPE of ``limit``."""
    if limit is None:
        return LARGEST_CAP
    room = ENVELOPE * limit - BASELINE_BYTES
    return int(max(SMALLEST_CAP, min(LARGEST_CAP, room / PER_BODY_BYTE)))


def expected_peak(cap: int) -> int:
    """Peak RSS the envelope expects when answers reach ``cap``."""
    return int(BASELINE_BYTES + PER_BODY_BYTE * cap)


def response_cap(configured: int | None, limit: int | None) -> tuple[int, str]:
    """MAX_RESPONSE_BYTES as set, or derived from the limit; and a line saying which and why."""
    if configured is not None:
        note = f"MAX_RESPONSE_BYTES {configured} (set)"
        if limit is not None and expected_peak(configured) > ENVELOPE * limit:
            note += (
                f"; WARNING: answers that large may need ~{expected_peak(configured) // MiB} MiB, "
                f"more than {ENVELOPE:.0%} of the container's {limit // MiB} MiB limit"
            )
        return configured, note
    cap = envelope_cap(limit)
    where = f"the container's {limit // MiB} MiB memory limit" if limit else "no memory limit"
    return cap, f"MAX_RESPONSE_BYTES {cap} (derived from {where})"
