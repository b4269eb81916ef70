"""Jobs: a document's processing runs, with progress and where the time went."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from docintel.api.deps import Db, authorized
from docintel.api.problems import Problem
from docintel.api.schemas import JobView
from docintel.db import session_scope
from docintel.models import Document, Job
from docintel.settings import Settings

router = APIRouter(prefix="/v1", tags=["jobs"], dependencies=[Depends(authorized)])


@router.get("/documents/{document_id}/job")
def get_document_job(document_id: uuid.UUID, db: Db) -> JobView:
    """The document's latest job."""
    doc = db.get(Document, document_id)
    if doc is None:
        raise Problem(404, "not found", f"no document {document_id}")
    return JobView.of(doc, _latest_job(db, document_id))


@router.get("/jobs/{job_id}")
def get_job(job_id: uuid.UUID, db: Db) -> JobView:
    job = db.get(Job, job_id)
    if job is None:
        raise Problem(404, "not found", f"no job {job_id}")
    doc = db.get(Document, job.document_id)
    assert doc is not None  # jobs are deleted with their document
    return JobView.of(doc, job)


def latest_job_id(settings: Settings, doc_id: uuid.UUID) -> uuid.UUID | None:
    """The document's newest run (none for a file refused at the door)."""
    with session_scope(settings.database_url) as session:
        job = _latest_job(session, doc_id)
        return None if job is None else job.id


def _latest_job(session: Session, doc_id: uuid.UUID) -> Job | None:
    query = select(Job).where(Job.document_id == doc_id).order_by(Job.started_at.desc())
    return session.scalar(query.limit(1))
