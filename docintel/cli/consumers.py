"""``docintel process`` in distributed mode: a warning when no worker takes the work."""

from __future__ import annotations

import logging
import time
import uuid

from docintel.cli.report import Report
from docintel.db import session_scope
from docintel.service import Progress
from docintel.settings import Settings

log = logging.getLogger(__name__)


class ConsumerWatch:
    """Says, within seconds, when no live worker consumes a queue this run needs, and
    again when one does. Otherwise a forgotten ``docintel worker`` looks like a slow one.

    ``cpu`` is always needed; another queue once a page waits on it (for a GPU model).
    """

    GRACE_S = 3.0  # a worker started together with this command needs a moment to report in
    EVERY_S = 2.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.next_check = self.started + self.GRACE_S
        self.missing: set[str] = set()

    def check(self, state: list[Progress], report: Report) -> None:
        now = time.monotonic()
        if self.settings.embedded or now < self.next_check or all(p.terminal for p in state):
            return
        self.next_check = now + self.EVERY_S
        try:
            missing = {q for q in self._needed(state) if self._consumers(q) == 0}
        except Exception as error:  # a hint must never end the wait
            log.debug("could not check for workers: %s", error)
            return
        for queue in sorted(missing - self.missing):
            report.say(
                f"docintel: warning: no worker consumes the '{queue}' queue (none reported "
                f"in recently); start one with `docintel worker --queues {queue}`. Waiting."
            )
        for queue in sorted(self.missing - missing):
            report.say(f"docintel: a worker now consumes the '{queue}' queue")
        self.missing = missing

    def _needed(self, state: list[Progress]) -> set[str]:
        return {"cpu"} | _waiting_on(self.settings, [p.document_id for p in state])

    def _consumers(self, queue: str) -> int:
        from docintel.queue.maintenance import live_consumers

        return live_consumers(self.settings, queue)


def _waiting_on(settings: Settings, ids: list[uuid.UUID]) -> set[str]:
    """The queues these documents' pages wait on for OCR or extraction."""
    from sqlalchemy import select

    from docintel.models import Page, PageStatus
    from docintel.pipeline.routing import default_queue

    waiting = (PageStatus.OCR, PageStatus.EXTRACT)
    with session_scope(settings.database_url) as session:
        query = select(Page.status, Page.queue).where(
            Page.document_id.in_(ids), Page.status.in_(waiting)
        )
        rows = session.execute(query.distinct()).all()
    return {queue or default_queue(settings, status) for status, queue in rows}
