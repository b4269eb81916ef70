"""Job progress, written in the same transaction that finishes a page.

Not left to the finalize task that every finished page also sends: in a busy
queue that message waits behind the rest of the document's work (a 300-page
scan through two CPU workers read 0/300 until its last page was done).
"""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from docintel.models import Job, Page, PageStatus
from docintel.models.base import utcnow


def page_counts(session: Session, document_id: uuid.UUID) -> Counter[PageStatus]:
    return Counter(
        dict(
            session.execute(
                select(Page.status, func.count())
                .where(Page.document_id == document_id)
                .group_by(Page.status)
            ).all()
        )
    )


def record_progress(session: Session, document_id: uuid.UUID) -> None:
    """Bring the running job's pages done/failed and heartbeat up to date."""
    counts = page_counts(session, document_id)
    done, failed = counts[PageStatus.DONE], counts[PageStatus.FAILED]
    # Workers finishing pages of one document commit in any order, and each
    # counts without seeing the others' uncommitted pages: never let an older
    # count overwrite a newer one.
    session.execute(
        update(Job)
        .where(Job.document_id == document_id, Job.finished_at.is_(None))
        .values(
            pages_done=case((Job.pages_done > done, Job.pages_done), else_=done),
            pages_failed=case((Job.pages_failed > failed, Job.pages_failed), else_=failed),
            heartbeat_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
