"""The sweeper: find work that stopped moving (lost message, killed worker) and restart it.

A document never stays ``processing`` forever: stuck pages are re-sent, and a
page that got stuck ``max_page_attempts`` times fails with a clear error. Work
is stuck when it made no progress for ``stuck_after_s``, or at once when the
process that claimed it ran on this host and is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, exists, or_, select

from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.models.base import utcnow
from docintel.pipeline.claims import dead_claimers
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.errors import DocumentError, ErrorCode
from docintel.pipeline.ocr import ocr_batch_size
from docintel.pipeline.page import ocr_queue
from docintel.pipeline.page_results import fail_page
from docintel.pipeline.priority import page_priority

_IN_FLIGHT = (PageStatus.PENDING, PageStatus.OCR)


def sweep(ctx: StageContext) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.stuck_after_s)

    stuck_pages = session.scalars(
        select(Page)
        .join(Document)
        .where(
            Document.status == DocumentStatus.PROCESSING,
            Page.status.in_(_IN_FLIGHT),
            or_(
                Page.claimed_at < cutoff,
                and_(Page.claimed_at.is_(None), Page.updated_at < cutoff),
                and_(Page.claimed_at.is_not(None), Page.claimed_by.in_(dead_claimers(session))),
            ),
        )
        .with_for_update(skip_locked=True)
    ).all()
    follow_ups = _restart(ctx, stuck_pages)

    for doc in session.scalars(
        select(Document).where(
            Document.status == DocumentStatus.QUEUED, Document.updated_at < cutoff
        )
    ):
        doc.updated_at = now
        follow_ups.append(FollowUp("docintel.split", (str(doc.id),)))

    in_flight = exists().where(Page.document_id == Document.id, Page.status.in_(_IN_FLIGHT))
    for doc_id in session.scalars(
        select(Document.id).where(Document.status == DocumentStatus.PROCESSING, ~in_flight)
    ):
        follow_ups.append(FollowUp("docintel.finalize", (str(doc_id),)))
    return follow_ups


def resume_document(ctx: StageContext, document_id: str) -> list[FollowUp]:
    """Restart whatever of one document no worker holds, without waiting for the sweep.

    For the embedded mode, where nothing else drives work: an interrupted
    ``docintel process`` left the document unfinished, and submitting the same
    file again resumes it. Claims of processes of this host that are gone are
    taken over; other claimed pages are left to ``sweep`` (their claimer may
    still be alive, in another process), which frees them once they are stale.
    """
    session = ctx.session
    doc = session.get(Document, uuid.UUID(document_id))
    if doc is None:
        return []
    if doc.status == DocumentStatus.QUEUED:
        return [FollowUp("docintel.split", (document_id,))]
    if doc.status != DocumentStatus.PROCESSING:
        return []
    in_flight = session.scalars(
        select(Page).where(Page.document_id == doc.id, Page.status.in_(_IN_FLIGHT))
    ).all()
    if not in_flight:
        return [FollowUp("docintel.finalize", (document_id,))]
    lost = set(dead_claimers(session, doc.id))
    return _restart(ctx, [p for p in in_flight if p.claimed_at is None or p.claimed_by in lost])


def _restart(ctx: StageContext, pages: Sequence[Page]) -> list[FollowUp]:
    """Send ``pages`` again, or fail those that keep killing the workers that claim them."""
    settings, now = ctx.settings, utcnow()
    follow_ups: list[FollowUp] = []
    waiting_for_ocr = 0
    for page in pages:
        # Only a page some worker claimed and then lost counts against it: one
        # that merely waits (a lost message, a long queue) is no page that kills.
        if page.claimed_at is not None and page.attempts >= settings.max_page_attempts:
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
            priority = page_priority(page.number)
            follow_ups.append(FollowUp("docintel.process_page", (page.id,), priority=priority))
        else:
            waiting_for_ocr += 1
    # An ocr_batch message is a wake-up that claims up to a batch of any waiting
    # pages: one per batch is enough, one per page would flood the GPU queue.
    batches = -(-waiting_for_ocr // ocr_batch_size(settings))
    queue = ocr_queue(settings.ocr_engine)
    follow_ups.extend(FollowUp("docintel.ocr_batch", (), queue=queue) for _ in range(batches))
    return follow_ups
