"""The API's answers, apart from the ORM models (the output contract is ``docintel.output``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from docintel.models import Document, Job


class ErrorInfo(BaseModel):
    code: str
    message: str | None

    @classmethod
    def of(cls, doc: Document) -> ErrorInfo | None:
        return cls(code=doc.error_code, message=doc.error_message) if doc.error_code else None


class AcceptedLinks(BaseModel):
    document: str
    job: str


class Accepted(BaseModel):
    """An upload or reprocess taken: follow ``links.job`` for progress."""

    document_id: uuid.UUID
    job_id: uuid.UUID | None  # none for a file refused at the door (its document says why)
    created: bool  # false: the same bytes were stored before, this is that document
    links: AcceptedLinks

    @classmethod
    def of(cls, doc_id: uuid.UUID, job_id: uuid.UUID | None, *, created: bool) -> Accepted:
        job = f"/v1/jobs/{job_id}" if job_id else f"/v1/documents/{doc_id}/job"
        links = AcceptedLinks(document=f"/v1/documents/{doc_id}", job=job)
        return cls(document_id=doc_id, job_id=job_id, created=created, links=links)


class DocumentSummary(BaseModel):
    id: uuid.UUID
    filename: str
    status: str
    source: str
    page_count: int | None
    created_at: datetime
    error: ErrorInfo | None

    @classmethod
    def of(cls, doc: Document) -> DocumentSummary:
        return cls(
            id=doc.id,
            filename=doc.filename,
            status=str(doc.status),
            source=doc.source,
            page_count=doc.page_count,
            created_at=doc.created_at,
            error=ErrorInfo.of(doc),
        )


class DocumentList(BaseModel):
    items: list[DocumentSummary]
    next_cursor: str | None  # pass back as ``cursor`` for the next page


class JobView(BaseModel):
    """A processing run of a document: progress while it runs, seconds per stage after."""

    id: uuid.UUID | None
    document_id: uuid.UUID
    status: str
    pages_total: int | None
    pages_done: int
    pages_failed: int
    stage_seconds: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorInfo | None

    @classmethod
    def of(cls, doc: Document, job: Job | None) -> JobView:
        return cls(
            id=job.id if job else None,
            document_id=doc.id,
            status=str(doc.status),
            pages_total=job.pages_total if job else doc.page_count,
            pages_done=job.pages_done if job else 0,
            pages_failed=job.pages_failed if job else 0,
            stage_seconds=job.stage_seconds if job else {},
            started_at=job.started_at if job else None,
            finished_at=job.finished_at if job else None,
            error=ErrorInfo.of(doc),
        )


class SearchHit(BaseModel):
    document_id: uuid.UUID
    filename: str
    page: int
    snippet: str  # matches in <mark>
    rank: float


class SearchResults(BaseModel):
    query: str
    hits: list[SearchHit]
