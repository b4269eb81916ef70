"""The JSON shapes of API answers that are not the output contract itself."""

from __future__ import annotations

import uuid
from typing import Any

from docintel.models import Document, Job


def accepted_body(doc_id: uuid.UUID, *, created: bool) -> dict[str, Any]:
    return {
        "document_id": str(doc_id),
        "created": created,
        "links": {"document": f"/v1/documents/{doc_id}", "job": f"/v1/documents/{doc_id}/job"},
    }


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
