"""The probe answers, cached until they could change: the one thing probes read.

A verdict depends on the poll state and on time (grace periods, MAX_AGE). Each ``Verdict`` says
until when only a new poll could change it, so a probe usually costs a dictionary lookup. Whoever
wants to know about a new verdict (the transition log) subscribes with ``on_verdict``.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from app.clock import Clock
from app.identity import Identity
from app.liveness import evaluate_live
from app.pollstate import PollState
from app.progress.hook import ProgressHook
from app.readiness import READY_CHECKS, evaluate_ready
from app.render import matched_worker_ids, probe_body
from app.rules import Rules
from app.tracking import Change
from app.verdict import Notes, Verdict, iso
from app.wire import Reason, ReasonCode

logger = logging.getLogger("app.verdict")

VerdictObserver = Callable[[Verdict], None]


class NotesSource(Protocol):
    """Extra text for FAILED objects' reasons (the auto-restarter's schedule), versioned."""

    notes_version: int

    def notes(self) -> Notes: ...


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """A rendered probe response."""

    status_code: int
    body: bytes
    verdict: Verdict


@dataclass(slots=True)
class _Cached:
    generation: int
    answer: ProbeAnswer
    notes_version: int = 0


def error_answer(probe: str, scope: str, message: str) -> ProbeAnswer:
    """A 503 with one ``internal_error`` reason (judging failed, or nothing to judge with yet)."""
    reason = Reason(ReasonCode.INTERNAL_ERROR, message)
    verdict = Verdict(probe, False, f"not {probe}: {message}", (reason,))
    body = probe_body(verdict, scope=scope, worker_id=None, last_success=None)
    return ProbeAnswer(503, body, verdict)


def answer_probe(answers: "AnswerCache | None", probe: str) -> ProbeAnswer:
    """The probe's answer whatever happens: the cache's, or a 503 saying why not."""
    if answers is None:
        return error_answer(probe, "", "the sidecar is still starting")
    try:
        return answers.answer(probe)
    except Exception as exc:  # a probe answers 503 with a reason, never 500
        return answers.internal_error_answer(probe, exc)


class AnswerCache:
    """Holds the latest ``PollState`` (fed by the poller) and the probes' answers to it."""

    def __init__(
        self,
        rules: Rules,
        clock: Clock,
        *,
        worker_id: str | None = None,
        notes: NotesSource | None = None,
        on_verdict: Sequence[VerdictObserver] = (),
    ) -> None:
        self.rules = rules
        self._clock = clock
        self._worker_id = worker_id  # WORKER_ID when set; otherwise the matched ids are shown
        self._notes = notes
        self._on_verdict = tuple(on_verdict)
        self._state = PollState(started=clock.monotonic())
        self.progress: ProgressHook | None = None  # progress checks (app/progress), when on
        self._cache: dict[str, _Cached] = {}
        self._matched: list[str] = []
        self._matched_generation = -1

    @property
    def identity(self) -> Identity:
        return self.rules.identity

    @property
    def state(self) -> PollState:
        return self._state

    def on_poll(self, state: PollState, changes: list[Change]) -> None:
        """A poll observer: publish the new state and judge it, so verdict changes are seen."""
        self._state = state
        self.answer("ready")
        self.answer("live")

    def answer(self, probe: str) -> ProbeAnswer:
        """The cached answer for ``probe`` ("ready" or "live"), re-judged only when due."""
        state = self._state
        now = self._clock.monotonic()
        notes_version = self._notes.notes_version if self._notes is not None else 0
        progress = self.progress
        if progress is not None:
            notes_version += progress.version
        cached = self._cache.get(probe)
        if (
            cached is not None
            and cached.generation == state.generation
            and cached.notes_version == notes_version
            and now < cached.answer.verdict.valid_until
        ):
            return cached.answer
        wall_offset = self._clock.wall() - now
        if probe == "ready":
            notes = self._notes.notes() if self._notes is not None else None
            checks = READY_CHECKS if progress is None else (*READY_CHECKS, progress.ready_check)
            verdict = evaluate_ready(state, self.rules, now, wall_offset, notes, checks)
        else:
            kafka = progress.kafka_evidence() if progress is not None else None
            verdict = evaluate_live(state, self.rules, now, wall_offset, kafka)
            if progress is not None:
                verdict = progress.amend_live(verdict, now, wall_offset)
        body = probe_body(
            verdict,
            scope=self.rules.scope,
            worker_id=self.worker_id_shown(),
            last_success=iso(state.last_success, wall_offset) if state.last_success else None,
        )
        answer = ProbeAnswer(200 if verdict.ok else 503, body, verdict)
        self._cache[probe] = _Cached(state.generation, answer, notes_version)
        for observer in self._on_verdict:
            observer(verdict)
        return answer

    def internal_error_answer(self, probe: str, error: BaseException) -> ProbeAnswer:
        """What a probe says when judging itself failed: 503 with a reason, never a 500."""
        logger.error("evaluating /%s failed", probe, exc_info=error)
        return error_answer(
            probe, self.rules.scope, f"internal error in the sidecar ({type(error).__name__})"
        )

    def matched_ids(self) -> list[str]:
        """Worker ids in the cluster status that are this worker's (memoised per generation)."""
        state = self._state
        if self._matched_generation != state.generation:
            self._matched = matched_worker_ids(state, self.rules.identity)
            self._matched_generation = state.generation
        return self._matched

    def worker_id_shown(self) -> str | None:
        if self._worker_id is not None:
            return self._worker_id
        matched = self.matched_ids()
        return ", ".join(matched[:4]) if matched else None
