"""Polling with a deadline instead of fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline; says what was last seen."""


class GiveUp(RuntimeError):
    """Raised by a check when waiting longer cannot help (e.g. the process died)."""


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    describe: Callable[[], str] | None = None,
) -> T:
    """Calls ``check`` until it returns something truthy (returned) or ``timeout`` passes.

    Exceptions from ``check`` count as "not yet" (the last one is reported on timeout), so it can
    call a server that is still starting; :class:`GiveUp` ends the wait at once. ``describe`` adds
    the current state to the error.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = check()
        except GiveUp:
            raise
        except Exception as exc:  # not yet: e.g. connection refused
            last_error = exc
        else:
            if value:
                return value
            last_value = value
        if time.monotonic() >= deadline:
            detail = f"last result {last_value!r}"
            if last_error is not None:
                detail += f", last error {type(last_error).__name__}: {last_error}"
            if describe is not None:
                try:
                    detail += f"; {describe()}"
                except Exception as exc:
                    detail += f"; (describe failed: {exc})"
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}: {detail}")
        time.sleep(interval)
