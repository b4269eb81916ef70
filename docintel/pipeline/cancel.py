"""Cancel a document: its unfinished pages stop counting, and no worker's late result lands.

Under the document's row lock, every page still in flight is failed with the
code ``cancelled`` and its lease cleared. A worker holding one of those pages
writes its result only where its claim token still matches (``leases``), so
whatever it finishes is dropped; ``split`` and ``finalize`` act only on queued
or processing documents, so nothing brings the document back.

Its webhooks (event ``failed``, status ``cancelled``) are committed with the
cancel, their messages in the outbox: the next sweep sends them.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from docintel.errors import ErrorCode
from docintel.models import TERMINAL_STATUSES, Document, DocumentStatus, Job, Page, PageStatus
from docintel.models.base import utcnow
from docintel.pipeline.leases import IN_FLIGHT
from docintel.queue import outbox
from docintel.settings import Settings, get_settings
from docintel.webhooks.events import announce

Outcome = Literal["cancelled", "finished", "missing"]


def cancel_document(
    session: Session, document_id: uuid.UUID, settings: Settings | None = None
) -> Outcome:
    doc = session.get(Document, document_id, with_for_update=True)
    if doc is None:
        return "missing"
    if doc.status in TERMINAL_STATUSES:
        return "finished"
    now = utcnow()
    session.execute(
        update(Page)
        .where(Page.document_id == document_id, Page.status.in_(IN_FLIGHT))
        .values(
            status=PageStatus.FAILED,
            error_code=ErrorCode.CANCELLED.value,
            error_message="the document was cancelled",
            claim_token=None,
            claim_task=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    doc.status = DocumentStatus.CANCELLED
    doc.error_code = ErrorCode.CANCELLED.value
    doc.error_message = "cancelled before it finished"
    doc.finished_at = now
    job = session.scalar(
        select(Job).where(Job.document_id == document_id, Job.finished_at.is_(None)).limit(1)
    )
    if job is not None:
        job.status = DocumentStatus.CANCELLED.value
        job.finished_at = now
    outbox.stage(session, announce(session, settings or get_settings(), doc))
    return "cancelled"
