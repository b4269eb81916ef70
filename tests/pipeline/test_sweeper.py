"""The sweeper on Postgres: lost work is re-sent, killer pages fail, nothing stays processing.

Stages run for real (eager queue, real Postgres, real blob store). Time is
simulated by moving timestamps back, as if the work had sat still that long.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.models.base import utcnow
from docintel.pipeline import finalize, page, split, sweeper
from docintel.pipeline.claims import claim, claimer
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.ingest import ingest_file
from docintel.pipeline.priority import page_priority
from docintel.queue.base import run_stage
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

pytestmark = pytest.mark.postgres

LONG_AGO = timedelta(hours=2)
# In every document: the session database is shared, and equal bytes would dedup
# into another test's document.
RUN = uuid.uuid4().hex[:8]


SOURCE = "test-sweeper"


@pytest.fixture(autouse=True)
def _cancel_leftovers(pg_url: str) -> Iterator[None]:
    yield
    # Later sweeps in this database (other tests) must find nothing of ours to redo.
    with session_scope(pg_url) as session:
        session.execute(
            update(Document)
            .where(Document.source == SOURCE, Document.status.in_(("queued", "processing")))
            .values(status="cancelled")
        )


@pytest.fixture
def settings(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return apply_env(monkeypatch, base_env(tmp_path, pg_url))  # eager queue, real Postgres


def _ingest(settings: Settings, path: Path) -> uuid.UUID:
    """Ingest without sending anything: the split message is lost."""
    with session_scope(settings.database_url) as session:
        return ingest_file(StageContext(session, settings), path, source=SOURCE).document_id


def _split(settings: Settings, doc_id: uuid.UUID) -> list[int]:
    """Split without sending the page messages: they are lost."""
    with session_scope(settings.database_url) as session:
        follow_ups = split.split_document(StageContext(session, settings), str(doc_id))
    return [f.args[0] for f in follow_ups]


def _sweep(settings: Settings) -> list[FollowUp]:
    with session_scope(settings.database_url) as session:
        return sweeper.sweep(StageContext(session, settings))


def _age(settings: Settings, doc_id: uuid.UUID, *, claims: bool = False) -> None:
    """Make the document's rows look untouched for two hours."""
    old = utcnow() - LONG_AGO
    with session_scope(settings.database_url) as session:
        session.execute(update(Document).where(Document.id == doc_id).values(updated_at=old))
        values = {"updated_at": old, **({"claimed_at": old} if claims else {})}
        session.execute(update(Page).where(Page.document_id == doc_id).values(**values))


def _pages(settings: Settings, doc_id: uuid.UUID) -> dict[int, Page]:
    with session_scope(settings.database_url) as session:
        rows = session.scalars(select(Page).where(Page.document_id == doc_id))
        return {p.number: p for p in rows}


def _doc(settings: Settings, doc_id: uuid.UUID) -> Document:
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, doc_id)
        assert doc is not None
        return doc


def test_fresh_work_is_left_alone(settings: Settings, tmp_path: Path) -> None:
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "fresh.pdf", [f"One {RUN}", "Two"]))
    page_ids = _split(settings, doc_id)
    sent = _sweep(settings)
    assert not [f for f in sent if f.args and f.args[0] in (str(doc_id), *page_ids)]


def test_lost_messages_are_resent_and_the_documents_complete(
    settings: Settings, tmp_path: Path
) -> None:
    lost_split = _ingest(settings, fx.make_text_pdf(tmp_path / "a.pdf", [f"Lost split {RUN}"]))
    lost_pages = _ingest(settings, fx.make_text_pdf(tmp_path / "b.pdf", [f"Lost {RUN}", "pages"]))
    _split(settings, lost_pages)
    for doc_id in (lost_split, lost_pages):
        _age(settings, doc_id)

    run_stage(sweeper.sweep)  # sends for real; the eager queue runs what it sends

    for doc_id in (lost_split, lost_pages):
        assert _doc(settings, doc_id).status == DocumentStatus.DONE
        assert all(p.status == PageStatus.DONE for p in _pages(settings, doc_id).values())


def test_a_page_that_keeps_killing_workers_fails_with_timeout(
    settings: Settings, tmp_path: Path
) -> None:
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "killer.pdf", [f"Fine {RUN}", "Killer"]))
    first, killer = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:
        page.process_page(StageContext(session, settings), first)

    for attempt in range(1, settings.max_page_attempts + 1):
        with session_scope(settings.database_url) as session:  # a worker takes the page...
            assert claim(session, [killer], PageStatus.PENDING, settings.stuck_after_s)
        _age(settings, doc_id, claims=True)  # ...and dies holding it
        sent = _sweep(settings)
        if attempt < settings.max_page_attempts:
            assert FollowUp("docintel.process_page", (killer,), priority=page_priority(2)) in sent
            assert _pages(settings, doc_id)[2].claimed_at is None
    assert FollowUp("docintel.finalize", (str(doc_id),)) in sent

    pages = _pages(settings, doc_id)
    assert pages[2].status == PageStatus.FAILED
    assert pages[2].error_code == "timeout" and pages[2].error_message
    run_stage(finalize.finalize_document, str(doc_id))
    doc = _doc(settings, doc_id)
    assert doc.status == DocumentStatus.PARTIAL and pages[1].status == PageStatus.DONE


def test_a_page_waiting_for_ocr_is_resent_not_failed(settings: Settings, tmp_path: Path) -> None:
    doc_id = _ingest(settings, fx.make_scanned_pdf(tmp_path / "scan.pdf", [f"Waiting scan {RUN}"]))
    (page_id,) = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:
        session.execute(update(Page).where(Page.id == page_id).values(attempts=2))  # crashes
        page.process_page(StageContext(session, settings), page_id)  # third render works
    waiting = _pages(settings, doc_id)[1]
    # OCR is a stage of its own: earlier render crashes do not count against it.
    assert (waiting.status, waiting.attempts) == (PageStatus.OCR, 0)

    with session_scope(settings.database_url) as session:
        session.execute(update(Page).where(Page.id == page_id).values(attempts=99))
    _age(settings, doc_id)  # the OCR wake-up got lost, or the OCR queue is long
    sent = _sweep(settings)
    assert _pages(settings, doc_id)[1].status == PageStatus.OCR  # unclaimed: never "killing"
    assert FollowUp("docintel.ocr_batch", (), queue="cpu") in sent


def test_one_ocr_wakeup_per_batch_of_waiting_pages(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = base_env(tmp_path, pg_url) | {
        "DOCINTEL_OCR_ENGINE": "florence2",  # a batching engine; nothing is loaded here
        "DOCINTEL_GPU_BATCH_PAGES": "4",
    }
    settings = apply_env(monkeypatch, env)
    texts = [f"Scan {n} {RUN}" for n in range(1, 7)]
    doc_id = _ingest(settings, fx.make_scanned_pdf(tmp_path / "six.pdf", texts))
    for page_id in _split(settings, doc_id):
        with session_scope(settings.database_url) as session:
            page.process_page(StageContext(session, settings), page_id)
    assert {p.status for p in _pages(settings, doc_id).values()} == {PageStatus.OCR}
    _age(settings, doc_id)
    wakeups = [f for f in _sweep(settings) if f.task == "docintel.ocr_batch"]
    assert wakeups == [FollowUp("docintel.ocr_batch", (), queue="gpu")] * 2  # 6 pages, 4 a batch


def test_processing_document_with_nothing_in_flight_is_finalized(
    settings: Settings, tmp_path: Path
) -> None:
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "lost-final.pdf", [f"Only page {RUN}"]))
    (page_id,) = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:
        page.process_page(StageContext(session, settings), page_id)  # finalize message lost
    assert _doc(settings, doc_id).status == DocumentStatus.PROCESSING

    run_stage(sweeper.sweep)
    assert _doc(settings, doc_id).status == DocumentStatus.DONE


def test_claims_of_dead_local_processes_are_freed_at_once(
    settings: Settings, tmp_path: Path
) -> None:
    texts = [f"Dead claimer {RUN}", "Live claimer", "Remote claimer"]
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "claims.pdf", texts))
    dead, live, remote = _split(settings, doc_id)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owners = {
        dead: f"{socket.gethostname()}:{gone.pid}",
        live: claimer(),  # this test process: alive
        remote: f"other-host:{os.getpid()}",  # cannot be checked from here
    }
    with session_scope(settings.database_url) as session:
        assert claim(session, [dead, live, remote], PageStatus.PENDING, settings.stuck_after_s)
        for page_id, owner in owners.items():  # fresh claims: nowhere near stale
            session.execute(update(Page).where(Page.id == page_id).values(claimed_by=owner))

    sent = _sweep(settings)
    assert FollowUp("docintel.process_page", (dead,), priority=page_priority(1)) in sent
    assert not {live, remote} & {f.args[0] for f in sent if f.task == "docintel.process_page"}
    pages = _pages(settings, doc_id)
    assert pages[1].claimed_at is None
    assert pages[2].claimed_at is not None and pages[3].claimed_at is not None
