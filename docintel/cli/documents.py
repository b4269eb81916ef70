"""Naming a document on the command line: its id, an unambiguous prefix of it, or its file name."""

from __future__ import annotations

import string
import uuid
from pathlib import Path

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from docintel.models import Document

_SHOWN = 5  # candidates listed when a name is ambiguous


class DocumentNotFound(LookupError):
    """No document, or more than one, answers to the name; the message says which."""


def resolve_document(session: Session, ref: str) -> uuid.UUID:
    ref = ref.strip()
    try:
        wanted = uuid.UUID(ref)
    except ValueError:
        pass
    else:
        if session.get(Document, wanted) is None:
            raise DocumentNotFound(f"no document {ref}")
        return wanted
    rows = _by_id_prefix(session, ref) or _by_filename(session, ref)
    if not rows:
        raise DocumentNotFound(
            f"no document {ref!r} (give an id, the start of one, or a file name)"
        )
    if len(rows) > 1:
        listed = ", ".join(f"{doc_id} ({name})" for doc_id, name in rows[:_SHOWN])
        more = " and more" if len(rows) > _SHOWN else ""
        raise DocumentNotFound(
            f"{ref!r} names several documents: {listed}{more}; give more of the id"
        )
    return rows[0][0]


def _by_id_prefix(session: Session, ref: str) -> list[tuple[uuid.UUID, str]]:
    digits = ref.replace("-", "").lower()
    if len(digits) < 4 or not set(digits) <= set(string.hexdigits.lower()):
        return []
    # Postgres writes a uuid with dashes, SQLite stores 32 hex digits: compare without.
    text = func.replace(cast(Document.id, String), "-", "")
    query = select(Document.id, Document.filename).where(func.lower(text).like(f"{digits}%"))
    return [(row[0], row[1]) for row in session.execute(query.limit(_SHOWN + 1))]


def _by_filename(session: Session, ref: str) -> list[tuple[uuid.UUID, str]]:
    names = {ref, Path(ref).name}
    query = (
        select(Document.id, Document.filename)
        .where(or_(*(Document.filename == name for name in names)))
        .order_by(Document.created_at.desc())
    )
    return [(row[0], row[1]) for row in session.execute(query.limit(_SHOWN + 1))]
