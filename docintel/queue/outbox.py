"""The outbox: follow-up messages committed with the work that asks for them.

A stage's follow-ups are inserted in the stage's own transaction (``stage``),
sent after the commit and then deleted (``deliver``). A process killed between
the commit and the send, or a broker that refused the send, leaves the rows
behind, and the next sweep sends them (``docintel.pipeline.sweeper``).
Duplicates are harmless: every task checks the database before acting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete
from sqlalchemy.orm import Session

from docintel.db import session_scope
from docintel.models import OutboxMessage
from docintel.pipeline.context import FollowUp
from docintel.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Staged:
    """Follow-ups written to the outbox, with the ids of their rows."""

    follow_ups: tuple[FollowUp, ...] = ()
    row_ids: tuple[int, ...] = ()


def stage(session: Session, follow_ups: Sequence[FollowUp]) -> Staged:
    """Write ``follow_ups`` to the outbox inside the caller's transaction."""
    if not follow_ups:
        return Staged()
    rows = [
        OutboxMessage(task=f.task, args=list(f.args), queue=f.queue, priority=f.priority)
        for f in follow_ups
    ]
    session.add_all(rows)
    session.flush()
    return Staged(tuple(follow_ups), tuple(row.id for row in rows))


def deliver(settings: Settings, staged: Staged) -> None:
    """Send committed follow-ups, then delete their rows. A send failure propagates."""
    if not staged.follow_ups:
        return
    from docintel.queue.base import dispatch

    dispatch(staged.follow_ups)
    try:
        with session_scope(settings.database_url) as session:
            ids = staged.row_ids
            for start in range(0, len(ids), 10_000):  # drivers cap bound parameters
                chunk = ids[start : start + 10_000]
                session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(chunk)))
    except Exception:
        # Sent already; the sweep will send these once more, which is harmless.
        log.warning("could not clear %d sent outbox rows", len(staged.row_ids), exc_info=True)
