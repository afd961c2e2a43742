"""Child processes the harness starts, and only those, stopped by PID.

Every process is started in its own session (so a terminal's Ctrl-C reaches only the harness, which
then stops them in order) with a parent-death signal (Linux: SIGKILL when the harness dies without
cleaning up, e.g. ``kill -9``). Every process is registered; :func:`stop_all` (also run at exit)
sends SIGTERM to each still running PID, waits, then SIGKILL. Output goes to a log file.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """A started child process, its log file and how to stop it."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"# {time.strftime('%H:%M:%S')} started: {' '.join(cmd)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.pid = self.popen.pid
        self.started = time.monotonic()
        self.paused = False
        _register(self)

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} {'running' if self.alive else 'exited'}>"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def rss_kib(self) -> int | None:
        """Resident set size from /proc (Linux), None when unknown or exited."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_contains(self, text: str, tail_bytes: int = 256 * 1024) -> bool:
        """Whether the last ``tail_bytes`` of the log contain ``text``."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - tail_bytes))
                return text.encode() in log.read()
        except OSError:
            return False

    def _signal(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)  # this PID only, never a group or a name

    def pause(self) -> None:
        """SIGSTOP: frozen, its sockets still open (a hung process, as peers see it)."""
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; returns the exit status.
        A paused process is resumed first, or SIGTERM would wait for nothing."""
        if self.alive:
            self._signal(signal.SIGTERM)
            if self.paused:
                self.resume()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.popen.wait()
        _unregister(self)
        return self.popen.returncode

    def kill(self) -> int:
        """SIGKILL and reap."""
        self._signal(signal.SIGKILL)
        self.popen.wait()
        _unregister(self)
        return self.popen.returncode


_lock = threading.Lock()
_running: dict[int, ManagedProcess] = {}


def _register(proc: ManagedProcess) -> None:
    with _lock:
        _running[proc.pid] = proc


def _unregister(proc: ManagedProcess) -> None:
    with _lock:
        _running.pop(proc.pid, None)


def running() -> list[ManagedProcess]:
    with _lock:
        return list(_running.values())


def stop_all(timeout: float = 15.0) -> None:
    """Stops every process still registered, newest first (sidecars, workers, then the broker)."""
    for proc in reversed(running()):
        with contextlib.suppress(Exception):
            proc.stop(timeout)


atexit.register(stop_all)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM/SIGHUP, so ``finally`` blocks and fixtures run as on
    Ctrl-C (pytest treats it as an interrupt: teardown, then summary)."""


Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def raise_on_termination() -> dict[int, Handler]:
    """Turns SIGTERM and SIGHUP into :class:`Terminated`; returns the old handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    previous: dict[int, Handler] = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, handler)
    return previous


def restore_handlers(previous: Mapping[int, Handler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
