"""Running every stage twice leaves identical rows (Postgres, stages called directly)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from docintel.db import session_scope
from docintel.models import Document, Extraction, Job, Line, Page, PageStatus
from docintel.pipeline import finalize, ocr, page, split
from docintel.pipeline.context import StageContext
from docintel.service import submit
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

pytestmark = pytest.mark.postgres


def _snapshot(url: str, doc_id: uuid.UUID) -> dict[str, Any]:
    with session_scope(url) as session:
        pages = session.scalars(select(Page).where(Page.document_id == doc_id)).all()
        page_ids = [p.id for p in pages]
        lines = session.execute(
            select(Line.page_id, Line.idx, Line.text, Line.polygon, Line.confidence)
            .where(Line.page_id.in_(page_ids))
            .order_by(Line.page_id, Line.idx)
        ).all()
        return {
            "pages": [
                (p.id, p.number, p.status, p.text, p.markdown, p.text_source, p.width, p.image_key)
                for p in sorted(pages, key=lambda p: p.number)
            ],
            "lines": [tuple(row) for row in lines],
            "extractions": session.execute(
                select(Extraction.page_id, Extraction.kind, Extraction.idx).where(
                    Extraction.page_id.in_(page_ids)
                )
            ).all(),
            "jobs": session.scalars(select(Job.id).where(Job.document_id == doc_id)).all(),
            "document": session.execute(
                select(Document.status, Document.page_count).where(Document.id == doc_id)
            ).one(),
        }


def _run_all_stages(url: str, settings: Any, doc_id: uuid.UUID) -> None:
    with session_scope(url) as session:
        ctx = StageContext(session, settings)
        split.split_document(ctx, str(doc_id))
        page_ids = session.scalars(select(Page.id).where(Page.document_id == doc_id)).all()
    for page_id in page_ids:
        with session_scope(url) as session:
            page.process_page(StageContext(session, settings), page_id)
    for _ in page_ids:
        with session_scope(url) as session:
            ocr.ocr_batch(StageContext(session, settings))
    with session_scope(url) as session:
        finalize.finalize_document(StageContext(session, settings), str(doc_id))


def test_running_every_stage_twice_leaves_identical_rows(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = apply_env(monkeypatch, base_env(tmp_path, pg_url))  # eager queue, real Postgres
    path = fx.make_mixed_pdf(
        tmp_path / "mixed.pdf", ["Typed words", "Scanned words here"], scanned={2}, dpi=150
    )
    doc_id = submit(settings, path).document_id  # runs every stage once, eagerly
    before = _snapshot(settings.database_url, doc_id)
    assert before["document"].status == "done"

    # Second run of every stage on finished work: a no-op.
    _run_all_stages(settings.database_url, settings, doc_id)
    assert _snapshot(settings.database_url, doc_id) == before

    # Second run after the work is made to look unfinished (a redelivered message
    # racing a finished one): the rows are rewritten, identically.
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Page).where(Page.document_id == doc_id).values(status=PageStatus.PENDING)
        )
        session.execute(update(Document).where(Document.id == doc_id).values(status="processing"))
        session.execute(update(Job).where(Job.document_id == doc_id).values(finished_at=None))
    _run_all_stages(settings.database_url, settings, doc_id)
    assert _snapshot(settings.database_url, doc_id) == before
