"""Finalize: once no page is left in flight, settle the document's status and its job.

Every finished page asks for this; all but the last find pages in flight and
return after refreshing the job's progress. Running it twice gives the same result.
The one that settles the document also creates its webhook deliveries.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from docintel.db import lock_row
from docintel.models import Document, DocumentStatus, Job, Page, PageStatus
from docintel.models.base import utcnow
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.latency import record_stage_times
from docintel.pipeline.leases import IN_FLIGHT
from docintel.pipeline.progress import page_counts, record_progress
from docintel.webhooks.events import announce


def finalize_document(ctx: StageContext, document_id: str) -> list[FollowUp]:
    session = ctx.session
    doc_id = uuid.UUID(document_id)
    # Lock first, count after: the counts and the status then come from one moment,
    # and two finalizes of one document settle it once (on SQLite too).
    lock_row(session, Document, doc_id)
    doc = session.get(Document, doc_id, with_for_update=True)
    if doc is None or doc.status != DocumentStatus.PROCESSING:
        return []
    counts = page_counts(session, doc_id)
    done, failed = counts[PageStatus.DONE], counts[PageStatus.FAILED]
    if any(counts[s] for s in IN_FLIGHT):
        record_progress(session, doc_id)  # pages failed by the sweeper count too
        return []

    if failed == 0:
        doc.status = DocumentStatus.DONE
    elif done:
        doc.status = DocumentStatus.PARTIAL
        doc.error_code = "partial"
        doc.error_message = f"{failed} of {done + failed} pages failed; see each page's error"
    else:
        doc.status = DocumentStatus.FAILED
        first = session.execute(
            select(Page.error_code, Page.error_message)
            .where(Page.document_id == doc_id, Page.status == PageStatus.FAILED)
            .order_by(Page.number)
            .limit(1)
        ).one()
        doc.error_code = first.error_code
        doc.error_message = f"every page failed; page 1: {first.error_message}"
    doc.finished_at = utcnow()

    job = session.scalar(
        select(Job).where(Job.document_id == doc_id, Job.finished_at.is_(None)).limit(1)
    )
    if job is not None:
        job.status = doc.status.value
        job.pages_done, job.pages_failed = done, failed
        job.heartbeat_at = doc.finished_at
        timings = session.scalars(select(Page.timings).where(Page.document_id == doc_id)).all()
        job.stage_seconds = _stage_totals(timings)
        record_stage_times(session, timings)
        job.finished_at = doc.finished_at
    return announce(session, ctx.settings, doc)


def _stage_totals(timings: Any) -> dict[str, float]:
    totals: dict[str, float] = {}
    for entry in timings:
        for stage, seconds in (entry or {}).items():
            totals[stage] = totals.get(stage, 0.0) + float(seconds)
    return {stage: round(seconds, 3) for stage, seconds in totals.items()}
