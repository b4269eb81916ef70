"""Claims: a committed mark that a worker is on a page, made before the slow work.

A claim is committed before rendering or OCR starts, so a worker that is
killed mid-page leaves a visible, countable trace: the sweeper frees stale
claims and fails pages that keep killing workers, instead of retrying forever.
The conditional UPDATE makes claiming safe without row locks (SQLite too).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from docintel.models import Page, PageStatus
from docintel.models.base import utcnow


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
            .values(claimed_at=now, attempts=Page.attempts + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            claimed.append(page_id)
    session.commit()
    return claimed


def claim_ocr_batch(session: Session, limit: int, stale_after_s: int) -> list[int]:
    """Up to ``limit`` unclaimed pages waiting for OCR, oldest first, from any document."""
    candidates = session.scalars(
        select(Page.id)
        .where(Page.status == PageStatus.OCR, Page.claimed_at.is_(None))
        .order_by(Page.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    return claim(session, list(candidates), PageStatus.OCR, stale_after_s)
