"""The JSON shapes of API answers that are not the output contract itself."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from docintel.db import session_scope
from docintel.models import Document, Job
from docintel.settings import Settings


def accepted_body(doc_id: uuid.UUID, job_id: uuid.UUID | None, *, created: bool) -> dict[str, Any]:
    job_link = f"/v1/jobs/{job_id}" if job_id else f"/v1/documents/{doc_id}/job"
    return {
        "document_id": str(doc_id),
        "job_id": str(job_id) if job_id else None,
        "created": created,
        "links": {"document": f"/v1/documents/{doc_id}", "job": job_link},
    }


def latest_job_id(settings: Settings, doc_id: uuid.UUID) -> uuid.UUID | None:
    """The document's newest run (none for a file refused at the door)."""
    with session_scope(settings.database_url) as session:
        return session.scalar(
            select(Job.id).where(Job.document_id == doc_id).order_by(Job.started_at.desc()).limit(1)
        )


def summary(doc: Document) -> dict[str, Any]:
    return {
        "id": str(doc.id),
        "filename": doc.filename,
        "status": str(doc.status),
        "source": doc.source,
        "page_count": doc.page_count,
        "created_at": doc.created_at.isoformat(),
        "error": {"code": doc.error_code, "message": doc.error_message} if doc.error_code else None,
    }


def job_json(doc: Document, job: Job | None) -> dict[str, Any]:
    return {
        "id": str(job.id) if job else None,
        "document_id": str(doc.id),
        "status": doc.status.value if hasattr(doc.status, "value") else str(doc.status),
        "pages_total": job.pages_total if job else doc.page_count,
        "pages_done": job.pages_done if job else 0,
        "pages_failed": job.pages_failed if job else 0,
        "stage_seconds": job.stage_seconds if job else {},
        "started_at": job.started_at.isoformat() if job else None,
        "finished_at": job.finished_at.isoformat() if job and job.finished_at else None,
        "error": {"code": doc.error_code, "message": doc.error_message} if doc.error_code else None,
    }
