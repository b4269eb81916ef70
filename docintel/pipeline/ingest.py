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

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from docintel.document.sniff import sniff_media_type
from docintel.errors import DocumentError, ErrorCode
from docintel.models import TERMINAL_STATUSES, Document, DocumentStatus, Job, Page
from docintel.models.base import utcnow
from docintel.passwords import SEALED_OPTION, has_password
from docintel.pipeline.context import FollowUp, StageContext
from docintel.storage import original_key
from docintel.webhooks.events import announce

_HEAD_BYTES = 4096
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class IngestResult:
    document_id: uuid.UUID
    created: bool
    follow_ups: list[FollowUp] = field(default_factory=list)
    # The same bytes were submitted before: ``restarted`` when that document was
    # reset to run again (``reprocess``), else the options it ran with.
    restarted: bool = False
    earlier_options: dict[str, Any] | None = None


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
    reprocess: bool = False,
) -> IngestResult:
    """Create the document for ``path``, or find the one with the same bytes.

    With ``reprocess`` a finished earlier document (or, in embedded mode, an
    unfinished one: a worker still holding its pages finds them gone, and its
    writes match nothing) is reset and run again with ``options``; its earlier
    pages and results are deleted.
    """
    session, settings = ctx.session, ctx.settings
    size = path.stat().st_size
    sha256 = sha256_file(path)
    existing = session.scalar(select(Document).where(Document.sha256 == sha256))
    if existing is not None:
        if reprocess or _password_now_given(existing, options):
            # Decided under the row lock: a worker may finish (or a second reprocess
            # restart) the document between the read above and here.
            session.refresh(existing, with_for_update=True)
            if existing.status in TERMINAL_STATUSES or settings.embedded:
                follow_ups = restart_document(ctx, existing, path, options)
                return IngestResult(existing.id, False, follow_ups, restarted=True)
        return IngestResult(existing.id, False, earlier_options=dict(existing.options))

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
    _admit(ctx, doc, path)

    try:
        with session.begin_nested():
            session.add(doc)
    except IntegrityError:
        # Someone ingested the same bytes between our check and our insert.
        winner = session.scalar(select(Document.id).where(Document.sha256 == sha256))
        if winner is None:
            raise
        return IngestResult(winner, created=False)

    if doc.status == DocumentStatus.QUEUED:
        _open_job(session, doc)
        follow_ups = [FollowUp("docintel.split", (str(doc.id),))]
    else:  # refused at the door: failed already
        follow_ups = announce(session, settings, doc)
    return IngestResult(doc.id, created=True, follow_ups=follow_ups)


def _open_job(session: Session, doc: Document) -> None:
    """The run's job, from the start: an upload's answer can name it before the split
    counts the pages (the split fills them in)."""
    session.add(Job(document_id=doc.id, status="queued"))
    session.flush()


def _password_now_given(doc: Document, options: dict[str, Any] | None) -> bool:
    """A PDF refused for want of a password, submitted again with one: run it again,
    or the user who followed the error's advice would get the same failure back."""
    return (
        doc.status == DocumentStatus.FAILED
        and doc.error_code == ErrorCode.ENCRYPTED
        and has_password(options or {})
    )


def _admit(ctx: StageContext, doc: Document, path: Path) -> None:
    """Check size and type (a failure is recorded on the document) and store the original."""
    try:
        _check_size(doc.size_bytes, ctx.settings.max_upload_bytes)
        with path.open("rb") as handle:
            doc.media_type = sniff_media_type(handle.read(_HEAD_BYTES))
    except DocumentError as error:
        doc.status = DocumentStatus.FAILED
        doc.error_code, doc.error_message = error.code, error.message
    if doc.error_code != ErrorCode.TOO_LARGE:
        doc.original_key = ctx.store.put_file(original_key(doc.sha256), path)


def restart_document(
    ctx: StageContext, doc: Document, path: Path, options: dict[str, Any] | None
) -> list[FollowUp]:
    """Reset ``doc`` to be processed again from the split, with new options.

    Its pages go (lines and extractions with them, by cascade), its unfinished
    job is closed as superseded, and size and type are checked again against
    today's limits, as for a new upload.
    """
    session = ctx.session
    session.refresh(doc, with_for_update=True)  # one restart at a time
    # Workers still holding leases on these pages find them gone: their writes match nothing.
    session.execute(delete(Page).where(Page.document_id == doc.id))
    session.execute(
        update(Job)
        .where(Job.document_id == doc.id, Job.finished_at.is_(None))
        .values(status="superseded", finished_at=utcnow())
    )
    doc.options = _keep_password(doc.options, dict(options or {}))
    doc.status = DocumentStatus.QUEUED
    doc.error_code = doc.error_message = None
    doc.page_count = None
    doc.finished_at = None
    _admit(ctx, doc, path)
    session.flush()
    if doc.status != DocumentStatus.QUEUED:
        return announce(session, ctx.settings, doc)
    _open_job(session, doc)
    return [FollowUp("docintel.split", (str(doc.id),))]


def _keep_password(earlier: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """New options, with the (encrypted) password of the earlier run unless a new one
    is given: the file still needs it, and a reprocess for another DPI should not fail."""
    if SEALED_OPTION in earlier and SEALED_OPTION not in options:
        options[SEALED_OPTION] = earlier[SEALED_OPTION]
    return options


def _check_size(size: int, limit: int) -> None:
    if size == 0:
        raise DocumentError(ErrorCode.EMPTY_FILE, "the file is empty")
    if size > limit:
        raise DocumentError(
            ErrorCode.TOO_LARGE,
            f"the file is {size:,} bytes; the limit is {limit:,} (DOCINTEL_MAX_UPLOAD_BYTES)",
        )
