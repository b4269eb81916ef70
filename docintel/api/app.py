"""The HTTP API: upload documents, follow their jobs, read the results.

Uploads are streamed to a temporary file (the size limit enforced as bytes
arrive), sniffed from their content, stored and queued exactly as the CLI does
(``service.accept`` / ``service.start``). In embedded mode the work then runs
in this process on a background thread; otherwise workers take it. Errors are
RFC 9457 problem details. The API never imports an engine or torch.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from docintel.api import keys
from docintel.api.health import check_broker, check_database, check_storage
from docintel.api.idempotency import remember, replayed
from docintel.api.inputs import (
    checked_options,
    cursor_after,
    options_from_fields,
    read_cursor,
    safe_name,
    webhook_target,
)
from docintel.api.metrics import DatabaseCollector
from docintel.api.problems import Problem, problem_response
from docintel.api.upload import UploadError, UploadTooLarge, receive_upload
from docintel.api.views import accepted_body, job_json, latest_job_id, summary
from docintel.db import session_scope
from docintel.document.sniff import sniff_media_type
from docintel.errors import DocumentError
from docintel.models import (
    TERMINAL_STATUSES,
    Document,
    DocumentStatus,
    Job,
    Page,
)
from docintel.output import document_json, document_markdown, load_document, page_json
from docintel.passwords import SecretKeyError
from docintel.pipeline.cancel import cancel_document
from docintel.pipeline.delete import delete_document
from docintel.search import Filters, search_pages
from docintel.service import Accepted, QueueUnavailable, accept, start
from docintel.settings import Settings, get_settings

_HEAD_BYTES = 8192


def _session() -> Iterator[Session]:
    with session_scope(get_settings().database_url) as session:
        yield session


# Module level: FastAPI resolves these annotations from the module's names.
Db = Annotated[Session, Depends(_session)]


# Pages are numbered from 1; the bound keeps a huge number a 422, not a database error.
PageNumber = Annotated[int, PathParam(ge=1, le=2**31 - 1)]


def create_app() -> FastAPI:
    """The app, configured from ``DOCINTEL_*`` settings like every other process."""
    settings = get_settings()
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docintel-embedded")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        background.shutdown(wait=True, cancel_futures=False)

    app = FastAPI(
        title="docintel",
        summary="PDFs and scans to structured, queryable data.",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(Problem)
    async def _on_problem(_: Request, error: Problem) -> JSONResponse:
        return problem_response(error.status, error.title, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem_response(error.status_code, str(error.detail), None)

    @app.exception_handler(SecretKeyError)
    async def _on_secret_key(_: Request, error: SecretKeyError) -> JSONResponse:
        # The server's configuration, not the request, is at fault.
        return problem_response(503, "cannot keep a PDF password", str(error))

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return problem_response(422, "invalid request", f"{where}: {first['msg']}")

    def launch(accepted: Accepted) -> None:
        """Start a stored document's work: here on the background thread (embedded),
        else by sending it to the workers."""
        if settings.embedded:
            background.submit(start, settings, accepted)
            return
        # A broker that is down: the document is stored with its message kept, and
        # the sweep sends it once the broker is back.
        with contextlib.suppress(QueueUnavailable):
            start(settings, accepted)

    def authorized(
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        if not _keys_required(settings):
            return
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Problem(401, "unauthorized", "send an API key: Authorization: Bearer <key>")
        with session_scope(settings.database_url) as s:
            if not keys.verify_key(s, key.strip()):
                raise Problem(401, "unauthorized", "unknown or revoked API key")

    auth = [Depends(authorized)]

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        checks = {"database": check_database(settings), "storage": check_storage(settings)}
        if not settings.embedded:
            checks["broker"] = check_broker(settings)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(settings))

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/documents", status_code=202, dependencies=auth)
    async def upload(request: Request, response: Response) -> dict[str, Any]:
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
            name = safe_name(received.filename)
            key = request.headers.get("idempotency-key")
            if key is not None:
                earlier = replayed(settings, key, received.path)
                if earlier is not None:
                    response.headers["Location"] = f"/v1/documents/{earlier}"
                    return accepted_body(earlier, latest_job_id(settings, earlier), created=False)
            accepted = accept(
                settings,
                received.path,
                filename=name,
                options=options,
                source="api",
                reprocess=received.fields.get("reprocess", "").lower() == "true",
            )
        doc_id = accepted.result.document_id
        if key is not None:
            remember(settings, key, doc_id)
        job_id = latest_job_id(settings, doc_id)  # before the launch: embedded may finish it
        launch(accepted)
        response.headers["Location"] = f"/v1/documents/{doc_id}"
        return accepted_body(doc_id, job_id, created=accepted.result.created)

    @app.get("/v1/documents", dependencies=auth)
    def list_documents(
        db: Db,
        status: DocumentStatus | None = None,
        source: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
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
                or_(
                    Document.created_at < at,
                    and_(Document.created_at == at, Document.id < last),
                )
            )
        rows = list(db.scalars(query.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [summary(doc) for doc in rows],
            "next_cursor": cursor_after(rows[-1]) if more else None,
        }

    @app.get("/v1/search", dependencies=auth)
    def search(
        db: Db,
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        document_id: uuid.UUID | None = None,
        source: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """Pages whose text matches ``q`` (web search syntax on Postgres), best first."""
        filters = Filters(document_id, source, created_after, created_before)
        hits = search_pages(db, q, filters, limit=limit)
        return {
            "query": q,
            "hits": [
                {
                    "document_id": str(h.document_id),
                    "filename": h.filename,
                    "page": h.page,
                    "snippet": h.snippet,
                    "rank": h.rank,
                }
                for h in hits
            ],
        }

    @app.post("/v1/documents/{document_id}/cancel", dependencies=auth)
    def cancel(document_id: uuid.UUID, db: Db) -> dict[str, Any]:
        """Stop a document: unfinished pages fail as ``cancelled``; late results are dropped."""
        outcome = cancel_document(db, document_id)
        if outcome == "missing":
            raise Problem(404, "not found", f"no document {document_id}")
        if outcome == "finished":
            raise Problem(409, "already finished", f"document {document_id} has finished")
        doc = db.get(Document, document_id)
        assert doc is not None
        return summary(doc)

    @app.post("/v1/documents/{document_id}/reprocess", status_code=202, dependencies=auth)
    def reprocess(
        document_id: uuid.UUID,
        response: Response,
        body: Annotated[dict[str, Any] | None, Body()] = None,
    ) -> dict[str, Any]:
        """Run a finished document again from its stored original, with new ``options``."""
        options = (body or {}).get("options") or {}
        if not isinstance(options, dict):
            raise Problem(400, "bad options", "options must be a JSON object")
        options = checked_options(options)
        webhook_target(options)
        with session_scope(settings.database_url) as s:
            doc = s.get(Document, document_id)
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
        launch(accepted)
        response.headers["Location"] = f"/v1/documents/{document_id}"
        return accepted_body(document_id, job_id, created=False)

    @app.delete("/v1/documents/{document_id}", status_code=204, dependencies=auth)
    def delete(document_id: uuid.UUID, db: Db) -> Response:
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

    def _document(db: Session, document_id: uuid.UUID) -> Document:
        doc = load_document(db, document_id)
        if doc is None:
            raise Problem(404, "not found", f"no document {document_id}")
        return doc

    @app.get("/v1/documents/{document_id}", dependencies=auth)
    def get_document(document_id: uuid.UUID, db: Db) -> dict[str, Any]:
        """The document in the output contract."""
        return document_json(_document(db, document_id))

    @app.get(
        "/v1/documents/{document_id}/markdown",
        dependencies=auth,
        response_class=PlainTextResponse,
    )
    def get_markdown(document_id: uuid.UUID, db: Db) -> str:
        return document_markdown(_document(db, document_id))

    @app.get("/v1/documents/{document_id}/pages/{number}", dependencies=auth)
    def get_page(document_id: uuid.UUID, number: PageNumber, db: Db) -> dict[str, Any]:
        # One page's rows, not the whole document's.
        page = db.scalar(
            select(Page)
            .where(Page.document_id == document_id, Page.number == number)
            .options(selectinload(Page.lines), selectinload(Page.extractions))
        )
        if page is None:
            raise Problem(404, "not found", f"document {document_id} has no page {number}")
        return page_json(page)

    @app.get("/v1/documents/{document_id}/pages/{number}/image", dependencies=auth)
    def get_page_image(document_id: uuid.UUID, number: PageNumber, db: Db) -> StreamingResponse:
        key = db.scalar(
            select(Page.image_key).where(Page.document_id == document_id, Page.number == number)
        )
        if key is None:
            raise Problem(404, "not found", f"no image of page {number} of {document_id}")
        from docintel.pipeline.context import store_for

        handle = store_for(settings).open(key)
        return StreamingResponse(_chunks(handle), media_type="image/png")

    @app.get("/v1/documents/{document_id}/tables", dependencies=auth)
    def get_tables(document_id: uuid.UUID, db: Db) -> list[dict[str, Any]]:
        pages = document_json(_document(db, document_id))["pages"]
        return [{"page": p["number"], **t} for p in pages for t in p["tables"]]

    @app.get("/v1/documents/{document_id}/charts", dependencies=auth)
    def get_charts(document_id: uuid.UUID, db: Db) -> list[dict[str, Any]]:
        pages = document_json(_document(db, document_id))["pages"]
        return [{"page": p["number"], **c} for p in pages for c in p["charts"]]

    @app.get("/v1/documents/{document_id}/job", dependencies=auth)
    def get_document_job(document_id: uuid.UUID, db: Db) -> dict[str, Any]:
        """The document's latest job (none until its pages are counted)."""
        doc = db.get(Document, document_id)
        if doc is None:
            raise Problem(404, "not found", f"no document {document_id}")
        job = db.scalar(
            select(Job).where(Job.document_id == document_id).order_by(Job.started_at.desc())
        )
        return job_json(doc, job)

    @app.get("/v1/jobs/{job_id}", dependencies=auth)
    def get_job(job_id: uuid.UUID, db: Db) -> dict[str, Any]:
        job = db.get(Job, job_id)
        if job is None:
            raise Problem(404, "not found", f"no job {job_id}")
        doc = db.get(Document, job.document_id)
        assert doc is not None  # jobs are deleted with their document
        return job_json(doc, job)

    return app


def _keys_required(settings: Settings) -> bool:
    if settings.api_keys_required is not None:
        return settings.api_keys_required
    return not settings.embedded


def _chunks(handle: Any, size: int = 64 * 1024) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(size):
            yield chunk
