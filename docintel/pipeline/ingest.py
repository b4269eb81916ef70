"""Ingest: hash, deduplicate, check limits, store the original, create the document.

The original is stored before anything is queued, so no later failure can lose
it. Bad input still becomes a document row, failed with a clear code, so the
person who submitted it can see why.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from docintel.models import Document, DocumentStatus
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.errors import DocumentError, ErrorCode
from docintel.pipeline.sniff import sniff_media_type
from docintel.storage import original_key

_HEAD_BYTES = 4096
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: uuid.UUID
    created: bool
    follow_ups: list[FollowUp] = field(default_factory=list)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ingest_file(
    ctx: StageContext,
    path: Path,
    *,
    filename: str | None = None,
    options: dict[str, Any] | None = None,
    source: str = "cli",
) -> IngestResult:
    session, settings = ctx.session, ctx.settings
    size = path.stat().st_size
    sha256 = sha256_file(path)
    existing = session.scalar(select(Document.id).where(Document.sha256 == sha256))
    if existing is not None:
        return IngestResult(existing, created=False)

    doc = Document(
        id=uuid.uuid4(),
        sha256=sha256,
        filename=filename or path.name,
        media_type="application/octet-stream",
        size_bytes=size,
        options=dict(options or {}),
        source=source,
        status=DocumentStatus.QUEUED,
    )
    try:
        _check_size(size, settings.max_upload_bytes)
        with path.open("rb") as handle:
            doc.media_type = sniff_media_type(handle.read(_HEAD_BYTES))
    except DocumentError as error:
        doc.status = DocumentStatus.FAILED
        doc.error_code, doc.error_message = error.code, error.message

    if doc.error_code != ErrorCode.TOO_LARGE:
        doc.original_key = ctx.store.put_file(original_key(sha256), path)

    try:
        with session.begin_nested():
            session.add(doc)
    except IntegrityError:
        # Someone ingested the same bytes between our check and our insert.
        winner = session.scalar(select(Document.id).where(Document.sha256 == sha256))
        if winner is None:
            raise
        return IngestResult(winner, created=False)

    follow_ups = []
    if doc.status == DocumentStatus.QUEUED:
        follow_ups.append(FollowUp("docintel.split", (str(doc.id),)))
    return IngestResult(doc.id, created=True, follow_ups=follow_ups)


def _check_size(size: int, limit: int) -> None:
    if size == 0:
        raise DocumentError(ErrorCode.EMPTY_FILE, "the file is empty")
    if size > limit:
        raise DocumentError(
            ErrorCode.TOO_LARGE,
            f"the file is {size:,} bytes; the limit is {limit:,} (DOCINTEL_MAX_UPLOAD_BYTES)",
        )
