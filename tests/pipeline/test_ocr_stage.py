"""The OCR stage claims only live work and fails a page with a lost image alone, at once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.pipeline import ocr, page, split
from docintel.pipeline.context import StageContext, store_for
from docintel.pipeline.finalize import finalize_document
from docintel.pipeline.ingest import ingest_file
from docintel.pipeline.leases import QueueFilter, claim_batch
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return apply_env(monkeypatch, base_env(tmp_path, pg_url))


def _waiting_for_ocr(settings: Settings, path: Path) -> tuple[uuid.UUID, int]:
    """A scanned one-page document, rendered and waiting for OCR (no message sent)."""
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        doc_id = ingest_file(ctx, path).document_id
        (follow_up,) = split.split_document(ctx, str(doc_id))
    with session_scope(settings.database_url) as session:
        page.process_page(StageContext(session, settings), follow_up.args[0])
    return doc_id, follow_up.args[0]


def _page(settings: Settings, page_id: int) -> Page:
    with session_scope(settings.database_url) as session:
        row = session.get(Page, page_id)
        assert row is not None
        return row


def _ocr_batch(settings: Settings) -> list[object]:
    with session_scope(settings.database_url) as session:
        return list(ocr.ocr_batch(StageContext(session, settings)))


def test_a_lost_page_image_fails_that_page_at_once(settings: Settings, tmp_path: Path) -> None:
    scan = fx.make_scanned_pdf(tmp_path / "lost.pdf", [f"Lost image {uuid.uuid4().hex[:8]}"])
    doc_id, page_id = _waiting_for_ocr(settings, scan)
    waiting = _page(settings, page_id)
    assert waiting.status == PageStatus.OCR and waiting.image_key
    store_for(settings).delete(waiting.image_key)

    # Before: the whole batch raised, the claim stayed, and the page was retried
    # until the sweeper gave up on it as a "timeout", most of an hour later.
    sent = _ocr_batch(settings)
    failed = _page(settings, page_id)
    assert failed.status == PageStatus.FAILED and failed.claimed_at is None
    assert failed.error_code == "internal" and "missing" in (failed.error_message or "")
    assert sent  # the document is finalized right away
    with session_scope(settings.database_url) as session:
        finalize_document(StageContext(session, settings), str(doc_id))
        doc = session.get(Document, doc_id)
        assert doc is not None and doc.status == DocumentStatus.FAILED


def test_pages_of_cancelled_documents_are_not_claimed(settings: Settings, tmp_path: Path) -> None:
    scan = fx.make_scanned_pdf(tmp_path / "cancel.pdf", [f"Cancelled {uuid.uuid4().hex[:8]}"])
    doc_id, page_id = _waiting_for_ocr(settings, scan)
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Document).where(Document.id == doc_id).values(status=DocumentStatus.CANCELLED)
        )
    _ocr_batch(settings)
    left = _page(settings, page_id)
    assert (left.status, left.claimed_at, left.attempts) == (PageStatus.OCR, None, 0)


def test_a_locked_document_row_does_not_hide_its_pages(settings: Settings, tmp_path: Path) -> None:
    """Finalize (and a concurrent claim) lock the document row; a claim must still
    find the document's pages, or its wake-up is wasted and a page is stranded."""
    scan = fx.make_scanned_pdf(tmp_path / "locked.pdf", [f"Locked {uuid.uuid4().hex[:8]}"])
    doc_id, page_id = _waiting_for_ocr(settings, scan)
    with session_scope(settings.database_url) as holder:
        assert holder.get(Document, doc_id, with_for_update=True) is not None
        with session_scope(settings.database_url) as claimer:
            lease = claim_batch(
                claimer,
                PageStatus.OCR,
                1000,
                on=QueueFilter("cpu"),
                holder="test",
                lease_s=settings.lease_s,
                max_attempts=3,
            )
        assert lease is not None and page_id in lease.page_ids


def test_a_batch_that_sees_more_work_passes_the_wake_up_on(
    settings: Settings, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    for n in range(2):
        _waiting_for_ocr(settings, fx.make_scanned_pdf(tmp_path / f"{n}.pdf", [f"{tag} {n}"]))
    sent = _ocr_batch(settings)  # a CPU engine claims one page per task
    assert "docintel.ocr_batch" in [getattr(f, "task", None) for f in sent]
