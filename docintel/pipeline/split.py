"""Split: count pages, create one row per page, fan the pages out to workers.

Redelivery-safe: page rows are keyed by (document, number), so a second run
creates only the missing rows and re-sends only pages that are still pending.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import object_session

from docintel.document.page_ranges import select_pages
from docintel.document.sources import open_source
from docintel.errors import DocumentError, ErrorCode
from docintel.models import Document, DocumentStatus, Job, Page, PageStatus
from docintel.models.base import utcnow
from docintel.passwords import document_password
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.originals import local_original
from docintel.pipeline.priority import page_priority
from docintel.webhooks.events import announce


def split_document(ctx: StageContext, document_id: str) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    doc = session.get(Document, uuid.UUID(document_id), with_for_update=True)
    if doc is None or doc.status not in (DocumentStatus.QUEUED, DocumentStatus.PROCESSING):
        return []
    try:
        with open_source(
            local_original(ctx, doc),
            doc.media_type,
            password=document_password(settings, doc.options),
            max_pages=settings.max_pages,
            max_page_pixels=settings.max_page_pixels,
            dpi=render_dpi(doc, settings.render_dpi),
        ) as source:
            page_count = source.page_count
    except DocumentError as error:
        return fail_document(ctx, doc, error)

    numbers = list(range(1, page_count + 1))
    if doc.options.get("pages"):
        numbers = select_pages(str(doc.options["pages"]), page_count)
        if not numbers:
            named_none = DocumentError(
                ErrorCode.ZERO_PAGES,
                f"the page range {doc.options['pages']} names none of its {page_count} pages",
            )
            return fail_document(ctx, doc, named_none)
    doc.page_count = page_count
    doc.status = DocumentStatus.PROCESSING
    have = set(session.scalars(select(Page.number).where(Page.document_id == doc.id)))
    session.add_all(Page(document_id=doc.id, number=n) for n in numbers if n not in have)
    job = session.scalar(select(Job).where(Job.document_id == doc.id, Job.finished_at.is_(None)))
    if job is None:  # a document stored by an older version, or its job closed by hand
        job = Job(document_id=doc.id)
        session.add(job)
    job.pages_total, job.status = len(numbers), "running"
    session.flush()
    pending = session.execute(
        select(Page.id, Page.number)
        .where(Page.document_id == doc.id, Page.status == PageStatus.PENDING)
        .order_by(Page.number)
    )
    return [
        FollowUp("docintel.process_page", (page_id,), priority=page_priority(number))
        for page_id, number in pending
    ]


def render_dpi(doc: Document, default: int) -> int:
    return int(doc.options.get("dpi") or default)


def fail_document(ctx: StageContext, doc: Document, error: DocumentError) -> list[FollowUp]:
    """Fail a document that is still on its way; a finished one is left as it is.

    The caller holds the document's row lock. Its pages in flight are failed with
    it, which also clears their leases: nothing more is written to them. Returns
    the messages of its webhooks.
    """
    if doc.status not in (DocumentStatus.QUEUED, DocumentStatus.PROCESSING):
        return []
    session = object_session(doc)
    if session is not None:
        # A statement, not loaded rows: a page a worker finished meanwhile stays done.
        session.execute(
            update(Page)
            .where(
                Page.document_id == doc.id,
                Page.status.in_((PageStatus.PENDING, PageStatus.OCR, PageStatus.EXTRACT)),
            )
            .values(
                status=PageStatus.FAILED,
                error_code=error.code,
                error_message=error.message,
                claim_token=None,
                lease_expires_at=None,
                claimed_at=None,
            )
            .execution_options(synchronize_session=False)
        )
    doc.status = DocumentStatus.FAILED
    doc.error_code = error.code
    doc.error_message = error.message
    doc.finished_at = utcnow()
    ctx.session.execute(
        update(Job)
        .where(Job.document_id == doc.id, Job.finished_at.is_(None))
        .values(status=DocumentStatus.FAILED.value, finished_at=doc.finished_at)
    )
    return announce(ctx.session, ctx.settings, doc)
