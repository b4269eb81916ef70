"""The sweeper: find work that stopped moving (lost message, killed worker) and restart it.

A document never stays ``processing`` forever: stuck pages are re-sent, and a
page that got stuck ``max_page_attempts`` times fails with a clear error.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, exists, or_, select

from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.models.base import utcnow
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.errors import DocumentError, ErrorCode
from docintel.pipeline.page import ocr_queue
from docintel.pipeline.page_results import fail_page


def sweep(ctx: StageContext) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stuck_after_s)
    follow_ups: list[FollowUp] = []

    stuck_pages = session.scalars(
        select(Page)
        .join(Document)
        .where(
            Document.status == DocumentStatus.PROCESSING,
            Page.status.in_((PageStatus.PENDING, PageStatus.OCR)),
            or_(
                Page.claimed_at < cutoff,
                and_(Page.claimed_at.is_(None), Page.updated_at < cutoff),
            ),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for page in stuck_pages:
        if page.attempts >= settings.max_page_attempts:
            fail_page(
                page,
                DocumentError(
                    ErrorCode.TIMEOUT,
                    f"no progress after {page.attempts} attempts; "
                    "the page may crash or hang workers",
                ),
            )
            follow_ups.append(FollowUp("docintel.finalize", (str(page.document_id),)))
            continue
        page.claimed_at = None
        page.updated_at = now
        if page.status == PageStatus.PENDING:
            follow_ups.append(FollowUp("docintel.process_page", (page.id,)))
        else:
            follow_ups.append(
                FollowUp("docintel.ocr_batch", (), queue=ocr_queue(settings.ocr_engine))
            )

    for doc in session.scalars(
        select(Document).where(
            Document.status == DocumentStatus.QUEUED, Document.updated_at < cutoff
        )
    ):
        doc.updated_at = now
        follow_ups.append(FollowUp("docintel.split", (str(doc.id),)))

    in_flight = exists().where(
        Page.document_id == Document.id, Page.status.in_((PageStatus.PENDING, PageStatus.OCR))
    )
    for doc_id in session.scalars(
        select(Document.id).where(Document.status == DocumentStatus.PROCESSING, ~in_flight)
    ):
        follow_ups.append(FollowUp("docintel.finalize", (str(doc_id),)))
    return follow_ups
