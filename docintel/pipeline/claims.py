"""Claims: a committed mark that a worker is on a page, made before the slow work.

A claim is committed before rendering or OCR starts, so a worker that is
killed mid-page leaves a visible, countable trace: the sweeper frees stale
claims and fails pages that keep killing workers, instead of retrying forever.
The conditional UPDATE makes claiming safe without row locks (SQLite too).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.models.base import utcnow

_IN_FLIGHT = (PageStatus.PENDING, PageStatus.OCR)


def claimer() -> str:
    """Who is claiming: ``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(
    session: Session, page_ids: list[int], status: PageStatus, stale_after_s: int
) -> list[int]:
    now = utcnow()
    stale = now - timedelta(seconds=stale_after_s)
    claimed: list[int] = []
    for page_id in page_ids:
        result = session.execute(
            update(Page)
            .where(
                Page.id == page_id,
                Page.status == status,
                or_(Page.claimed_at.is_(None), Page.claimed_at < stale),
            )
            .values(
                claimed_at=now, claimed_by=claimer(), attempts=Page.attempts + 1, updated_at=now
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            claimed.append(page_id)
    session.commit()
    return claimed


def claim_ocr_batch(session: Session, limit: int, stale_after_s: int) -> list[int]:
    """Up to ``limit`` unclaimed pages waiting for OCR, oldest first, from any document.

    Only of documents still being processed: a cancelled or failed document's
    pages are not worth a GPU's time.
    """
    candidates = session.scalars(
        _waiting_for_ocr()
        .order_by(Page.id)
        .limit(limit)
        # Lock the page rows only: with the join, Postgres would also lock the
        # document row, and a second worker claiming at the same moment would skip
        # every page of that document and waste its wake-up, stranding a page
        # until the sweeper came by (seen at page 300 of 300).
        .with_for_update(skip_locked=True, of=Page)
    ).all()
    return claim(session, list(candidates), PageStatus.OCR, stale_after_s)


def ocr_work_waiting(session: Session) -> bool:
    """Whether any page of a live document waits, unclaimed, for OCR."""
    return session.scalar(_waiting_for_ocr().limit(1)) is not None


def _waiting_for_ocr() -> Select[int]:
    """Unclaimed pages waiting for OCR, of documents still being processed."""
    return (
        select(Page.id)
        .join(Document, Document.id == Page.document_id)
        .where(
            Page.status == PageStatus.OCR,
            Page.claimed_at.is_(None),
            Document.status == DocumentStatus.PROCESSING,
        )
    )


def dead_claimers(session: Session, document_id: uuid.UUID | None = None) -> list[str]:
    """Claimers of in-flight pages that were processes on this host and are gone.

    Their claims are lost for sure (a killed worker, an interrupted ``docintel
    process``) and can be freed now rather than after ``stuck_after_s``. Claims
    from other hosts cannot be checked from here and wait for the timeout.
    """
    host = socket.gethostname()
    query = select(Page.claimed_by).distinct()
    query = query.where(
        Page.status.in_(_IN_FLIGHT),
        Page.claimed_at.is_not(None),
        Page.claimed_by.startswith(f"{host}:", autoescape=True),
    )
    if document_id is not None:
        query = query.where(Page.document_id == document_id)
    return [owner for owner in session.scalars(query) if owner and not _alive(owner)]


def _alive(owner: str) -> bool:
    try:
        pid = int(owner.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return True  # not ours to judge: leave it to the timeout
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, but belongs to someone else
    return True
