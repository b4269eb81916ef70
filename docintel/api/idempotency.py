"""``Idempotency-Key``: a retried upload gets the first answer and starts nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from docintel.api.problems import Problem
from docintel.db import session_scope
from docintel.models import Document, IdempotencyKey
from docintel.pipeline.ingest import sha256_file
from docintel.settings import Settings


def replayed(settings: Settings, key: str, path: Path) -> uuid.UUID | None:
    """The document an earlier request with this ``Idempotency-Key`` made, if any.

    The same key with another file is a client bug, refused (409) rather than
    guessed at; a retry (same key, same bytes) gets the first answer again and
    never starts a second run, even with ``reprocess``.
    """
    if not 1 <= len(key) <= 255:
        raise Problem(400, "bad Idempotency-Key", "it must be 1 to 255 characters")
    with session_scope(settings.database_url) as s:
        row = s.execute(
            select(IdempotencyKey.document_id, Document.sha256)
            .join(Document, Document.id == IdempotencyKey.document_id)
            .where(IdempotencyKey.key == key)
        ).one_or_none()
    if row is None:
        return None
    if row.sha256 != sha256_file(path):
        raise Problem(409, "Idempotency-Key reused", "this key was used with another file")
    document_id: uuid.UUID = row.document_id
    return document_id


def remember(settings: Settings, key: str, doc_id: uuid.UUID) -> None:
    try:
        with session_scope(settings.database_url) as s:
            s.add(IdempotencyKey(key=key, document_id=doc_id))
    except IntegrityError:
        # A concurrent request with the same key won; it must have made the same document.
        with session_scope(settings.database_url) as s:
            winner = s.scalar(select(IdempotencyKey.document_id).where(IdempotencyKey.key == key))
        if winner != doc_id:
            raise Problem(
                409, "Idempotency-Key reused", "this key was used with another file"
            ) from None
