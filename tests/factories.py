"""Row factories for tests."""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy.orm import Session

from docintel.models import Document


def make_document(session: Session, *, sha256: str | None = None, **fields: object) -> Document:
    digest = sha256 or hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    values: dict[str, object] = {
        "sha256": digest,
        "filename": "sample.pdf",
        "media_type": "application/pdf",
        "size_bytes": 123,
        "original_key": f"originals/{digest}",
    }
    values.update(fields)
    doc = Document(**values)
    session.add(doc)
    session.flush()
    return doc
