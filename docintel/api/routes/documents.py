"""Documents: upload, list, cancel, reprocess, delete."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy import and_, or_, select
from starlette.concurrency import run_in_threadpool

from docintel.api.deps import AppLauncher, AppSettings, Db, authorized
from docintel.api.idempotency import remember, replayed
from docintel.api.inputs import (
    checked_options,
    cursor_after,
    options_from_fields,
    read_cursor,
    safe_name,
    webhook_target,
)
from docintel.api.problems import Problem
from docintel.api.routes.jobs import latest_job_id
from docintel.api.schemas import Accepted, DocumentList, DocumentSummary
from docintel.api.upload import UploadError, UploadTooLarge, receive_upload
from docintel.db import session_scope
from docintel.document.sniff import sniff_media_type
from docintel.errors import DocumentError
from docintel.models import TERMINAL_STATUSES, Document, DocumentStatus
from docintel.pipeline.cancel import cancel_document
from docintel.pipeline.delete import delete_document
from docintel.service import accept

router = APIRouter(prefix="/v1/documents", tags=["documents"], dependencies=[Depends(authorized)])

_HEAD_BYTES = 8192


@router.post("", status_code=202)
async def upload(
    request: Request, response: Response, settings: AppSettings, launcher: AppLauncher
) -> Accepted:
    """Upload a file (multipart field ``file``) with options; answers at once."""
    with tempfile.TemporaryDirectory(prefix="docintel-upload-") as folder:
        try:
            received = await receive_upload(
                request.headers.get("content-type", ""),
                request.stream(),
                Path(folder),
                settings.max_upload_bytes,
            )
        except UploadTooLarge as error:
            raise Problem(413, "file too large", str(error)) from None
        except UploadError as error:
            raise Problem(400, "bad upload", str(error)) from None
        assert received.path is not None  # receive_upload guarantees a file
        options = options_from_fields(received.fields)
        await run_in_threadpool(webhook_target, options)  # DNS must not stall the loop
        with received.path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
        try:
            sniff_media_type(head)
        except DocumentError as error:
            status = 400 if error.code == "empty_file" else 415
            raise Problem(status, "unsupported file", error.message) from None
        key = request.headers.get("idempotency-key")
        if key is not None:
            earlier = replayed(settings, key, received.path)
            if earlier is not None:
                response.headers["Location"] = f"/v1/documents/{earlier}"
                return Accepted.of(earlier, latest_job_id(settings, earlier), created=False)
        accepted = accept(
            settings,
            received.path,
            filename=safe_name(received.filename),
            options=options,
            source="api",
            reprocess=received.fields.get("reprocess", "").lower() == "true",
        )
    doc_id = accepted.result.document_id
    if key is not None:
        remember(settings, key, doc_id)
    job_id = latest_job_id(settings, doc_id)  # before the launch: embedded may finish it
    launcher.launch(accepted)
    response.headers["Location"] = f"/v1/documents/{doc_id}"
    return Accepted.of(doc_id, job_id, created=accepted.result.created)


@router.get("")
def list_documents(
    db: Db,
    status: DocumentStatus | None = None,
    source: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> DocumentList:
    """Documents, newest first; pass ``next_cursor`` back as ``cursor`` for more."""
    query = select(Document).order_by(Document.created_at.desc(), Document.id.desc())
    if status is not None:
        query = query.where(Document.status == status)
    if source is not None:
        query = query.where(Document.source == source)
    if created_after is not None:
        query = query.where(Document.created_at >= created_after)
    if created_before is not None:
        query = query.where(Document.created_at < created_before)
    if cursor:
        at, last = read_cursor(cursor)
        query = query.where(
            or_(Document.created_at < at, and_(Document.created_at == at, Document.id < last))
        )
    rows = list(db.scalars(query.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return DocumentList(
        items=[DocumentSummary.of(doc) for doc in rows],
        next_cursor=cursor_after(rows[-1]) if more else None,
    )


@router.post("/{document_id}/cancel")
def cancel(document_id: uuid.UUID, db: Db) -> DocumentSummary:
    """Stop a document: unfinished pages fail as ``cancelled``; late results are dropped."""
    outcome = cancel_document(db, document_id)
    if outcome == "missing":
        raise Problem(404, "not found", f"no document {document_id}")
    if outcome == "finished":
        raise Problem(409, "already finished", f"document {document_id} has finished")
    doc = db.get(Document, document_id)
    assert doc is not None
    return DocumentSummary.of(doc)


@router.post("/{document_id}/reprocess", status_code=202)
def reprocess(
    document_id: uuid.UUID,
    response: Response,
    settings: AppSettings,
    launcher: AppLauncher,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> Accepted:
    """Run a finished document again from its stored original, with new ``options``."""
    options = (body or {}).get("options") or {}
    if not isinstance(options, dict):
        raise Problem(400, "bad options", "options must be a JSON object")
    options = checked_options(options)
    webhook_target(options)
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, document_id)
        if doc is None:
            raise Problem(404, "not found", f"no document {document_id}")
        if doc.status not in TERMINAL_STATUSES:
            raise Problem(409, "still processing", f"document {document_id} is {doc.status}")
        if not doc.original_key:
            raise Problem(409, "no original", "the upload was refused before it was stored")
        original, filename, source = doc.original_key, doc.filename, doc.source
    from docintel.pipeline.context import store_for

    with tempfile.TemporaryDirectory(prefix="docintel-reprocess-") as folder:
        path = Path(folder) / "original"
        store_for(settings).download(original, path)
        accepted = accept(
            settings, path, filename=filename, options=options, source=source, reprocess=True
        )
    if not accepted.result.restarted:  # a concurrent reprocess or upload took it first
        raise Problem(409, "still processing", f"document {document_id} is being processed")
    job_id = latest_job_id(settings, document_id)
    launcher.launch(accepted)
    response.headers["Location"] = f"/v1/documents/{document_id}"
    return Accepted.of(document_id, job_id, created=False)


@router.delete("/{document_id}", status_code=204)
def delete(document_id: uuid.UUID, db: Db, settings: AppSettings) -> Response:
    """Delete a finished document: its rows, its original and its page images."""
    from docintel.pipeline.context import store_for

    outcome = delete_document(db, store_for(settings), document_id)
    if outcome == "missing":
        raise Problem(404, "not found", f"no document {document_id}")
    if outcome == "processing":
        raise Problem(
            409,
            "still processing",
            f"document {document_id} is being processed; cancel it first or wait for it",
        )
    return Response(status_code=204)
