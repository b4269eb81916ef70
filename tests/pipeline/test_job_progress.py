"""The jobs row shows where a document is while it runs, not only once it is finished."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Job
from docintel.pipeline import ocr, page, split
from docintel.pipeline.context import StageContext
from docintel.pipeline.ingest import ingest_file
from docintel.queue.base import run_stage
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

pytestmark = pytest.mark.postgres


def test_pages_done_and_heartbeat_advance_page_by_page(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = apply_env(monkeypatch, base_env(tmp_path, pg_url))  # eager queue, real Postgres
    # Unique bytes: the session database is shared, equal bytes would dedup.
    texts = [f"One {uuid.uuid4()}", "Two", "Three"]
    path = fx.make_text_pdf(tmp_path / "three.pdf", texts)
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        doc_id = ingest_file(ctx, path).document_id
        page_ids = [f.args[0] for f in split.split_document(ctx, str(doc_id))]

    def job() -> Job:
        with session_scope(settings.database_url) as session:
            row = session.scalar(select(Job).where(Job.document_id == doc_id))
            assert row is not None
            return row

    started = job()
    assert (started.pages_total, started.pages_done) == (3, 0)
    heartbeats = [started.heartbeat_at]
    for done, page_id in enumerate(page_ids, start=1):
        # The page task, as a worker runs it: its finalize follow-up runs eagerly.
        run_stage(page.process_page, page_id)
        current = job()
        assert (current.pages_done, current.pages_failed) == (done, 0)
        assert current.heartbeat_at > heartbeats[-1]
        heartbeats.append(current.heartbeat_at)
        if done < len(page_ids):
            assert current.finished_at is None and current.status == "running"

    finished = job()
    assert finished.status == "done" and finished.finished_at is not None
    assert set(finished.stage_seconds) == {"render", "text_layer", "detect"}
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, doc_id)
        assert doc is not None and doc.status == DocumentStatus.DONE


def test_progress_is_written_with_the_page_not_by_a_later_finalize(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a busy queue the finalize message waits behind the document's other work:
    the stage that finishes a page must count it itself (native and OCR path)."""
    settings = apply_env(monkeypatch, base_env(tmp_path, pg_url))
    marker = str(uuid.uuid4())[:8]
    path = fx.make_mixed_pdf(
        tmp_path / "mixed.pdf", [f"Native page {marker}", "Scanned page 2"], scanned={2}
    )
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        doc_id = ingest_file(ctx, path).document_id
        page_ids = [f.args[0] for f in split.split_document(ctx, str(doc_id))]

    def progress() -> tuple[int, int]:
        with session_scope(settings.database_url) as session:
            row = session.scalar(select(Job).where(Job.document_id == doc_id))
            assert row is not None
            return (row.pages_done, row.pages_total)

    # The stage functions alone, their follow-ups (finalize among them) never sent.
    for page_id in page_ids:
        with session_scope(settings.database_url) as session:
            page.process_page(StageContext(session, settings), page_id)
    assert progress() == (1, 2)  # the native page; the scan waits for OCR
    # Oldest first: pages other tests left waiting in this database may come first.
    for _ in range(20):
        with session_scope(settings.database_url) as session:
            follow_ups = ocr.ocr_batch(StageContext(session, settings))
        if progress() == (2, 2) or not follow_ups:
            break
    assert progress() == (2, 2)
