"""Submitting the same bytes again: earlier results are reused, or with reprocess replaced."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Job, Line, Page, TextSource
from docintel.pipeline.context import StageContext
from docintel.pipeline.ingest import ingest_file
from docintel.service import submit
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env


def _pages(settings: Settings, doc_id: uuid.UUID) -> list[tuple[int, str | None, str | None]]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Page.number, Page.text_source, Page.status)
            .where(Page.document_id == doc_id)
            .order_by(Page.number)
        )
        return [(n, source, status) for n, source, status in rows]


def test_reprocess_replaces_the_results_with_new_options(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = apply_env(monkeypatch, base_env(tmp_path, database_url))  # eager: submit runs it
    pdf = fx.make_text_pdf(tmp_path / "memo.pdf", [f"Reprocess me {uuid.uuid4()}", "Page two"])

    first = submit(settings, pdf, options={"ocr_mode": "never"})
    assert _pages(settings, first.document_id) == [(1, "native", "done"), (2, "native", "done")]

    reused = submit(settings, pdf, options={"ocr_mode": "always"})
    assert not reused.created and not reused.restarted
    assert reused.document_id == first.document_id
    assert reused.earlier_options == {"ocr_mode": "never"}
    assert [p[1] for p in _pages(settings, first.document_id)] == ["native", "native"]

    again = submit(settings, pdf, options={"ocr_mode": "always"}, reprocess=True)
    assert again.restarted and again.document_id == first.document_id
    assert _pages(settings, first.document_id) == [(1, "ocr", "done"), (2, "ocr", "done")]
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, first.document_id)
        assert doc is not None
        assert doc.status == DocumentStatus.DONE and doc.options == {"ocr_mode": "always"}
        jobs = session.scalars(select(Job).where(Job.document_id == doc.id)).all()
        assert len(jobs) == 2 and all(job.finished_at is not None for job in jobs)
        lines = session.scalars(
            select(Line.text).join(Page).where(Page.document_id == doc.id).order_by(Page.number)
        ).all()
        assert any("Reprocess" in text for text in lines)
        # The old pages' lines went with them: no line was kept or written twice.
        assert (
            session.scalar(select(func.count()).select_from(Page).where(Page.document_id == doc.id))
            == 2
        )
        assert [p.text_source for p in doc.pages] == [TextSource.OCR, TextSource.OCR]


@pytest.mark.postgres
def test_a_document_being_processed_by_workers_is_not_reset(pg_url: str, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        database_url=pg_url,
        broker_url="redis://127.0.0.1:6379/15",  # distributed: workers may hold its pages
        storage_url=(tmp_path / "blobs").resolve().as_uri(),
    )
    pdf = fx.make_text_pdf(tmp_path / "busy.pdf", [f"Busy {uuid.uuid4()}"])
    with session_scope(pg_url) as session:
        created = ingest_file(StageContext(session, settings), pdf, options={"dpi": 100})
        doc = session.get(Document, created.document_id)
        assert doc is not None
        doc.status = DocumentStatus.PROCESSING
        session.add(Page(document_id=doc.id, number=1))
    with session_scope(pg_url) as session:
        again = ingest_file(StageContext(session, settings), pdf, reprocess=True)
    assert not again.restarted and again.follow_ups == []
    assert again.earlier_options == {"dpi": 100}
    with session_scope(pg_url) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Page).where(Page.document_id == again.document_id)
            )
            == 1
        )
