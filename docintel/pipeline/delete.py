"""Delete a finished document: its rows (pages, lines, tables, jobs cascade) and its blobs."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from docintel.models import TERMINAL_STATUSES, Document, Page
from docintel.storage import BlobStore

Outcome = Literal["deleted", "processing", "missing"]


def delete_document(session: Session, store: BlobStore, document_id: uuid.UUID) -> Outcome:
    """A document still being processed is refused: cancel it first, or wait."""
    doc = session.get(Document, document_id, with_for_update=True)
    if doc is None:
        return "missing"
    if doc.status not in TERMINAL_STATUSES:
        return "processing"
    blobs = [doc.original_key] if doc.original_key else []
    blobs += [
        key
        for key in session.scalars(select(Page.image_key).where(Page.document_id == document_id))
        if key
    ]
    session.delete(doc)
    session.flush()
    # Rows first: a blob left behind by a crash here is garbage, never a dangling row.
    for key in blobs:
        store.delete(key)
    return "deleted"
