"""The outbox: follow-up messages committed with the work that asks for them.

A stage's follow-ups are inserted in the stage's own transaction (``stage``),
sent after the commit and then deleted (``deliver``). A process killed between
the commit and the send, or a broker that refused the send, leaves the rows
behind, and the next sweep sends them (``take_unsent``, in
``docintel.queue.maintenance.sweep_turn``).
Duplicates are harmless: every task checks the database before acting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from docintel.db import session_scope
from docintel.models import OutboxMessage
from docintel.pipeline.context import FollowUp
from docintel.settings import Settings

log = logging.getLogger(__name__)

_CHUNK = 10_000


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
            _delete(session, staged.row_ids)
    except Exception:
        # Sent already; the sweep will send these once more, which is harmless.
        log.warning("could not clear %d sent outbox rows", len(staged.row_ids), exc_info=True)


def take_unsent(session: Session, older_than: datetime) -> list[FollowUp]:
    """Rows whose sender committed them and died before sending (or deleting) them.

    Taken out here, inside the sweep's transaction; the sweep stages them again
    with its own messages and sends them all.
    """
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.created_at < older_than)
        .order_by(OutboxMessage.id)
        .with_for_update(skip_locked=True)
    ).all()
    _delete(session, [row.id for row in rows])
    return [
        FollowUp(row.task, tuple(row.args), queue=row.queue, priority=row.priority) for row in rows
    ]


def _delete(session: Session, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), _CHUNK):  # a driver takes at most 65,535 parameters
        session.execute(
            delete(OutboxMessage)
            .where(OutboxMessage.id.in_(ids[start : start + _CHUNK]))
            .execution_options(synchronize_session=False)
        )
