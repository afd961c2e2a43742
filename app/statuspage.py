"""GET /status: the full picture for humans, assembled from the answers and the poll state."""

from app import __version__
from app.answers import AnswerCache
from app.clock import Clock
from app.progress.hook import DISABLED_SECTION
from app.render import status_page
from app.restart import Restarter
from app.settings import Settings


def status_body(
    answers: AnswerCache,
    settings: Settings,
    clock: Clock,
    restarter: Restarter | None = None,
    version: str = __version__,
) -> bytes:
    """The /status page (always answered with 200 by the route)."""
    ready = answers.answer("ready").verdict
    live = answers.answer("live").verdict
    now = clock.monotonic()
    wall_offset = clock.wall() - now
    return status_page(
        state=answers.state,
        rules=answers.rules,
        settings=settings,
        ready=ready,
        live=live,
        matched=answers.matched_ids(),
        now=now,
        wall_offset=wall_offset,
        version=version,
        auto_restart=restarter.status_view(now, wall_offset)
        if restarter is not None
        else {"enabled": False},
        progress=answers.progress.status_section(now, wall_offset)
        if answers.progress is not None
        else DISABLED_SECTION,
    )
