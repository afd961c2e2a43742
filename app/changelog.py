"""Log lines for what changed: connector/task states (a poll observer) and verdicts (a verdict
observer). Once per change, never per probe or per poll; a mass change is summarised."""

import logging
from collections import Counter

from app.connect.decoding import first_line
from app.logs import safe
from app.pollstate import PollState
from app.rules import Rules
from app.tracking import Change
from app.verdict import Verdict

changes_logger = logging.getLogger("app.changes")
verdict_logger = logging.getLogger("app.verdict")

# Objects logged one by one per poll; beyond this a mass change is one summary line plus these.
LOGGED_CHANGES = 5


def _what(change: Change) -> str:
    return f"{safe(change.connector)}" + (
        f" task {change.task}" if change.task is not None else " connector"
    )


def _state_text(state: str | None, absent: str) -> str:
    return safe(state, 40) if state else absent  # Connect's text too


class ChangeLog:
    """Poll observer: one line per changed object in scope; on a mass change, a summary plus the
    first few (the full list is in /status)."""

    def __init__(self, rules: Rules) -> None:
        self._rules = rules

    def on_poll(self, state: PollState, changes: list[Change]) -> None:
        if changes:
            self.log(changes)

    def log(self, changes: list[Change]) -> None:
        rules = self._rules
        shown: list[Change] = []
        moves: Counter[tuple[str, str]] = Counter()
        for change in changes:
            if not rules.selector.selected(change.connector):
                continue
            workers = [w for w in (change.old_worker, change.new_worker) if w is not None]
            if not any(rules.in_scope(worker) for worker in workers):
                continue
            # Appearances are news only when not fine.
            if change.old_state is None and change.new_state in rules.ready_states:
                continue
            if change.old_state == change.new_state:
                changes_logger.debug(
                    "%s %s moved %s -> %s",
                    _what(change),
                    safe(change.new_state, 40),
                    safe(change.old_worker),
                    safe(change.new_worker),
                )
                continue
            old, new = (
                _state_text(change.old_state, "(new)"),
                _state_text(change.new_state, "(gone)"),
            )
            moves[(old, new)] += 1
            if len(shown) < LOGGED_CHANGES:
                shown.append(change)
        total = sum(moves.values())
        if total > LOGGED_CHANGES:
            changes_logger.warning(
                "%d connector/task state changes in one poll: %s; the first %d follow, "
                "all are in /status",
                total,
                ", ".join(f"{count} {old}→{new}" for (old, new), count in moves.most_common(10)),
                len(shown),
            )
        for change in shown:
            trace = first_line(change.trace)
            changes_logger.info(
                "%s %s→%s on %s%s",
                _what(change),
                _state_text(change.old_state, "(new)"),
                _state_text(change.new_state, "(gone)"),
                safe(change.new_worker or change.old_worker),
                f": {safe(trace)}" if trace else "",
            )


class VerdictLog:
    """Verdict observer: one line when a probe's outcome or its set of reason codes changes."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[bool, tuple[str, ...]]] = {}

    def on_verdict(self, verdict: Verdict) -> None:
        key = (verdict.ok, tuple(sorted({reason.code for reason in verdict.reasons})))
        previous = self._last.get(verdict.probe)
        if previous == key:
            return
        self._last[verdict.probe] = key
        if previous is None and verdict.ok:
            verdict_logger.info("%s", safe(verdict.summary))
            return
        level = logging.INFO if verdict.ok else logging.WARNING
        verdict_logger.log(level, "%s", safe(verdict.summary))
