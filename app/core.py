"""The sidecar's core for one run: rules, answer cache, poller and (opt-in) restarter, wired.

Used by the server (app/main.py) and by ``connect-probe check`` (app/cli.py) alike. The poller
feeds each poll to its observers in order: the answer cache first (so probes see it at once),
then the change log, then whatever the caller adds (metrics, memory trimming).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from app.answers import AnswerCache
from app.changelog import ChangeLog, VerdictLog
from app.clock import Clock
from app.connect.client import ConnectClient
from app.identity import Identity
from app.poller import Poller, PollObserver
from app.restart import Restarter
from app.rules import Rules
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Core:
    """What the lifespan builds and the routes, metrics and CLI read."""

    answers: AnswerCache
    poller: Poller
    restarter: Restarter | None


def build_core(
    settings: Settings,
    client: ConnectClient,
    identity: Identity,
    clock: Clock,
    *,
    observers: Sequence[PollObserver] = (),
) -> Core:
    """Wire one sidecar; ``observers`` see each poll after the answer cache and the change log."""
    rules = Rules.from_settings(settings, identity)
    # AUTO_RESTART off: no restarter at all, so nothing but GETs can ever be sent.
    restarter = Restarter(client, rules, settings, clock) if settings.auto_restart else None
    answers = AnswerCache(
        rules,
        clock,
        worker_id=settings.worker_id,
        notes=restarter,
        on_verdict=(VerdictLog().on_verdict,),
    )
    poller = Poller(
        client,
        clock,
        poll_interval=settings.poll_interval,
        health_recheck_interval=settings.health_recheck_interval,
        # A poll takes at most TIMEOUT (its requests' deadline), then the loop waits POLL_INTERVAL.
        stuck_after=settings.poll_interval + settings.timeout + 10.0,
        required=settings.required_connectors,
        quiet_states=settings.ready_states,
        observers=(answers.on_poll, ChangeLog(rules).on_poll, *observers),
        after_poll=restarter.after_poll if restarter is not None else None,
    )
    return Core(answers, poller, restarter)
