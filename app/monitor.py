"""Turns the latest poll state into probe answers, cached until the answer could change.

A verdict depends on the poll state and on time (grace periods, MAX_AGE). Each ``Verdict`` says
until when only a new poll could change it, so a probe usually costs a dictionary lookup. This is
also where verdict changes and connector/task state changes are logged — once each, never per
probe or per poll.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from app import __version__
from app.clock import Clock
from app.identity import Identity
from app.logs import safe
from app.pollstate import PollState
from app.progress.hook import DISABLED_SECTION, ProgressHook
from app.render import matched_worker_ids, probe_body, status_page
from app.restart import Restarter
from app.settings import Settings
from app.tracking import Change
from app.verdict import Reason, Rules, Verdict, evaluate_live, evaluate_ready, first_line, iso

logger = logging.getLogger("app.verdict")
changes_logger = logging.getLogger("app.changes")


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """A rendered probe response, with its ASGI start message built once (see app/fastpath)."""

    status_code: int
    body: bytes
    verdict: Verdict
    start: dict[str, Any] = field(default_factory=dict, compare=False)


def make_answer(status_code: int, body: bytes, verdict: Verdict) -> ProbeAnswer:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    start = {"type": "http.response.start", "status": status_code, "headers": headers}
    return ProbeAnswer(status_code, body, verdict, start)


@dataclass(slots=True)
class _Cached:
    generation: int
    answer: ProbeAnswer
    notes_version: int = 0


def error_answer(probe: str, scope: str, message: str) -> ProbeAnswer:
    """A 503 with one ``internal_error`` reason (judging failed, or nothing to judge with yet)."""
    verdict = Verdict(probe, False, f"not {probe}: {message}", (Reason("internal_error", message),))
    return make_answer(
        503, probe_body(verdict, scope=scope, worker_id=None, last_success=None), verdict
    )


def answer_probe(monitor: "Monitor | None", probe: str) -> ProbeAnswer:
    """The probe's answer whatever happens: the monitor's, or a 503 saying why not."""
    if monitor is None:
        return error_answer(probe, "", "the sidecar is still starting")
    try:
        return monitor.answer(probe)
    except Exception as exc:  # a probe answers 503 with a reason, never 500
        return monitor.internal_error_answer(probe, exc)


class Monitor:
    """Reads ``state_source()`` (the poller's latest state) and answers probes from it."""

    def __init__(
        self, settings: Settings, rules: Rules, clock: Clock, *, restarter: Restarter | None = None
    ) -> None:
        self._settings = settings
        self.restarter = restarter  # AUTO_RESTART: its schedule shows in reasons and /status
        self.progress: ProgressHook | None = None  # progress checks (app/progress), when on
        self._rules = rules
        self._clock = clock
        self._state = PollState(started=clock.monotonic())
        self._cache: dict[str, _Cached] = {}
        self._last_logged: dict[str, tuple[bool, tuple[str, ...]]] = {}
        self._matched: list[str] = []
        self._matched_generation = -1

    @property
    def identity(self) -> Identity:
        return self._rules.identity

    @property
    def state(self) -> PollState:
        return self._state

    # --- fed by the poller ------------------------------------------------------------------
    def on_poll(self, state: PollState, changes: list[Change]) -> None:
        """Publish a new state, log object changes, and re-judge so verdict changes get logged."""
        self._state = state
        if changes:
            self._log_changes(changes)
        self.answer("ready")
        self.answer("live")

    def _log_changes(self, changes: list[Change]) -> None:
        rules = self._rules
        for change in changes:
            if not rules.selector.selected(change.connector):
                continue
            workers = [w for w in (change.old_worker, change.new_worker) if w is not None]
            if not any(rules.in_scope(worker) for worker in workers):
                continue
            # Appearances are news only when not fine.
            if change.old_state is None and change.new_state in rules.ready_states:
                continue
            what = f"{safe(change.connector)}" + (
                f" task {change.task}" if change.task is not None else " connector"
            )
            old = safe(change.old_state, 40) if change.old_state else "(new)"  # Connect's text too
            new = safe(change.new_state, 40) if change.new_state else "(gone)"
            if old == new:
                changes_logger.debug(
                    "%s %s moved %s -> %s",
                    what,
                    new,
                    safe(change.old_worker),
                    safe(change.new_worker),
                )
                continue
            trace = first_line(change.trace)
            changes_logger.info(
                "%s %s→%s on %s%s",
                what,
                old,
                new,
                safe(change.new_worker or change.old_worker),
                f": {safe(trace)}" if trace else "",
            )

    # --- answering probes -------------------------------------------------------------------
    def answer(self, probe: str) -> ProbeAnswer:
        """The cached answer for ``probe`` ("ready" or "live"), re-judged only when due."""
        state = self._state
        now = self._clock.monotonic()
        cached = self._cache.get(probe)
        if (
            cached is not None
            and cached.generation == state.generation
            and cached.notes_version == self._notes_version()
            and now < cached.answer.verdict.valid_until
        ):
            return cached.answer
        wall_offset = self._clock.wall() - now
        if probe == "ready":
            notes = self.restarter.notes() if self.restarter is not None else None
            verdict = evaluate_ready(state, self._rules, now, wall_offset, notes)
        else:
            verdict = evaluate_live(state, self._rules, now, wall_offset)
        if self.progress is not None:
            verdict = self.progress.amend(verdict, now, wall_offset)
        body = probe_body(
            verdict,
            scope=self._rules.scope,
            worker_id=self._worker_id(state),
            last_success=iso(state.last_success, wall_offset) if state.last_success else None,
        )
        answer = make_answer(200 if verdict.ok else 503, body, verdict)
        self._cache[probe] = _Cached(state.generation, answer, self._notes_version())
        self._log_verdict(verdict)
        return answer

    def internal_error_answer(self, probe: str, error: BaseException) -> ProbeAnswer:
        """What a probe says when judging itself failed: 503 with a reason, never a 500."""
        logger.error("evaluating /%s failed", probe, exc_info=error)
        return error_answer(
            probe, self._rules.scope, f"internal error in the sidecar ({type(error).__name__})"
        )

    def _notes_version(self) -> int:
        version = self.restarter.notes_version if self.restarter is not None else 0
        return version + (self.progress.version if self.progress is not None else 0)

    def _matched_ids(self, state: PollState) -> list[str]:
        if self._matched_generation != state.generation:
            self._matched = matched_worker_ids(state, self._rules.identity)
            self._matched_generation = state.generation
        return self._matched

    def _worker_id(self, state: PollState) -> str | None:
        if self._settings.worker_id is not None:
            return self._settings.worker_id
        matched = self._matched_ids(state)
        return ", ".join(matched[:4]) if matched else None

    def _log_verdict(self, verdict: Verdict) -> None:
        key = (verdict.ok, tuple(sorted({reason.code for reason in verdict.reasons})))
        previous = self._last_logged.get(verdict.probe)
        if previous == key:
            return
        self._last_logged[verdict.probe] = key
        if previous is None and verdict.ok:
            logger.info("%s", safe(verdict.summary))
            return
        level = logging.INFO if verdict.ok else logging.WARNING
        logger.log(level, "%s", safe(verdict.summary))

    def status(self, version: str = __version__) -> bytes:
        """The /status page."""
        ready = self.answer("ready").verdict
        live = self.answer("live").verdict
        now = self._clock.monotonic()
        state = self._state
        matched = self._matched_ids(state)
        return status_page(
            state=state,
            rules=self._rules,
            settings=self._settings,
            ready=ready,
            live=live,
            matched=matched,
            now=now,
            wall_offset=self._clock.wall() - now,
            version=version,
            auto_restart=self.restarter.status_view(now, self._clock.wall() - now)
            if self.restarter is not None
            else {"enabled": False},
            progress=self.progress.status_section(now, self._clock.wall() - now)
            if self.progress is not None
            else DISABLED_SECTION,
        )
