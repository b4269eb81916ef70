"""The sweeper on Postgres: lost work is re-sent, killer pages fail, nothing stays processing.

Stages run for real (eager queue, real Postgres, real blob store). Time is
simulated by moving timestamps back, as if the work had sat still that long.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus, WorkerHeartbeat
from docintel.models.base import utcnow
from docintel.pipeline import finalize, page, split, sweeper
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.ingest import ingest_file
from docintel.pipeline.leases import Lease, claim
from docintel.pipeline.priority import page_priority
from docintel.queue import outbox
from docintel.queue.base import run_stage
from docintel.queue.maintenance import sweep_turn
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


def _sweep(settings: Settings, *, broker_lost: bool = False) -> list[FollowUp]:
    with session_scope(settings.database_url) as session:
        return sweeper.sweep(StageContext(session, settings), broker_lost=broker_lost)


def _age(settings: Settings, doc_id: uuid.UUID, *, leases: bool = False) -> None:
    """Make the document's rows look untouched for two hours (and its leases lapsed)."""
    old = utcnow() - LONG_AGO
    with session_scope(settings.database_url) as session:
        session.execute(update(Document).where(Document.id == doc_id).values(updated_at=old))
        values = {"updated_at": old, **({"lease_expires_at": old} if leases else {})}
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


def _no_dead_workers(settings: Settings) -> None:
    # Workers other tests killed left their rows: each would look like a death.
    with session_scope(settings.database_url) as session:
        session.execute(delete(WorkerHeartbeat))


def test_fresh_work_is_left_alone(settings: Settings, tmp_path: Path) -> None:
    _no_dead_workers(settings)
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "fresh.pdf", [f"One {RUN}", "Two"]))
    page_ids = _split(settings, doc_id)
    sent = _sweep(settings)
    assert not [f for f in sent if f.args and f.args[0] in (str(doc_id), *page_ids)]


def test_waiting_work_is_resent_at_once_when_a_worker_dies(
    settings: Settings, tmp_path: Path
) -> None:
    """A SIGKILLed worker takes the messages it had reserved but not started with it:
    the broker hides them until its visibility timeout (an hour). Their pages hold no
    lease, so only the worker's silence tells."""
    _no_dead_workers(settings)
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "held.pdf", [f"Held {RUN}", "Two"]))
    page_ids = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:
        silent = utcnow() - timedelta(seconds=sweeper.silent_after_s(settings) + 5)
        session.add(
            WorkerHeartbeat(
                id=str(uuid.uuid4()),
                hostname="killed",
                pid=4242,
                queues="cpu",
                started_at=silent,
                heartbeat_at=silent,
            )
        )
    sent = _sweep(settings)
    assert {f.args[0] for f in sent if f.task == "docintel.process_page"} >= set(page_ids)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(WorkerHeartbeat).where(WorkerHeartbeat.pid == 4242)) is None
    again = _sweep(settings)  # once: the dead worker is forgotten, the pages were touched
    assert not [f for f in again if f.args and f.args[0] in page_ids]


def test_lost_messages_are_resent_and_the_documents_complete(
    settings: Settings, tmp_path: Path
) -> None:
    lost_split = _ingest(settings, fx.make_text_pdf(tmp_path / "a.pdf", [f"Lost split {RUN}"]))
    lost_pages = _ingest(settings, fx.make_text_pdf(tmp_path / "b.pdf", [f"Lost {RUN}", "pages"]))
    _split(settings, lost_pages)
    for doc_id in (lost_split, lost_pages):
        _age(settings, doc_id)

    sweep_turn(force=True)  # sends for real; the eager queue runs what it sends

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
            lease = claim(
                session,
                [killer],
                PageStatus.PENDING,
                holder=f"task-{attempt}",
                lease_s=60,
                max_attempts=settings.max_page_attempts,
            )
            assert lease is not None
        _age(settings, doc_id, leases=True)  # ...and dies holding it: its lease lapses
        sent = _sweep(settings)
        if attempt < settings.max_page_attempts:
            assert FollowUp("docintel.process_page", (killer,), priority=page_priority(2)) in sent
            assert _pages(settings, doc_id)[2].claim_token is None
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
    assert FollowUp("docintel.ocr_batch", ("cpu",), queue="cpu") in sent


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
    assert (
        wakeups == [FollowUp("docintel.ocr_batch", ("gpu",), queue="gpu")] * 2
    )  # 6 pages, 4 a batch


def test_processing_document_with_nothing_in_flight_is_finalized(
    settings: Settings, tmp_path: Path
) -> None:
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "lost-final.pdf", [f"Only page {RUN}"]))
    (page_id,) = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:
        page.process_page(StageContext(session, settings), page_id)  # finalize message lost
    assert _doc(settings, doc_id).status == DocumentStatus.PROCESSING

    sweep_turn(force=True)
    assert _doc(settings, doc_id).status == DocumentStatus.DONE


def test_live_leases_are_left_alone_and_lapsed_ones_are_taken_back(
    settings: Settings, tmp_path: Path
) -> None:
    texts = [f"Lapsed lease {RUN}", "Live lease"]
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "leases.pdf", texts))
    lapsed, live = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:
        old = claim(
            session, [lapsed], PageStatus.PENDING, holder="gone", lease_s=60, max_attempts=3
        )
        held = claim(
            session, [live], PageStatus.PENDING, holder="alive", lease_s=600, max_attempts=3
        )
        assert old is not None and held is not None
        session.execute(
            update(Page).where(Page.id == lapsed).values(lease_expires_at=utcnow() - LONG_AGO)
        )
        session.commit()

    sent = _sweep(settings)
    # Whoever sweeps, on whatever host or PID namespace: only the lease's clock counts.
    resent = {f.args[0] for f in sent if f.task == "docintel.process_page"}
    assert lapsed in resent and live not in resent
    pages = _pages(settings, doc_id)
    assert pages[1].claim_token is None  # a new token: the old holder's writes are refused
    assert pages[2].claim_token == held.token


def test_a_task_retry_takes_back_its_own_claim(settings: Settings, tmp_path: Path) -> None:
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "retry.pdf", [f"Retry {RUN}"]))
    (page_id,) = _split(settings, doc_id)
    with session_scope(settings.database_url) as session:

        def take(holder: str, *, retrying: bool = False) -> Lease | None:
            return claim(
                session,
                [page_id],
                PageStatus.PENDING,
                holder=holder,
                lease_s=600,
                max_attempts=3,
                retrying=retrying,
            )

        first = take("task-a")
        assert take("task-b") is None  # a live lease of someone else
        # A Celery retry whose release failed (the database was away) takes it back,
        # as the same attempt.
        again = take("task-a", retrying=True)
        assert first is not None and again is not None
        assert again.token != first.token  # the earlier run of the task is fenced out
        assert _pages(settings, doc_id)[1].attempts == 1
        # A task whose process keeps dying is redelivered with the same id, no retry:
        # each retake counts, and at the limit it is refused, left for the sweep to fail.
        assert take("task-a") is not None and take("task-a") is not None
        assert take("task-a") is None
    assert _pages(settings, doc_id)[1].attempts == 3


def test_unsent_outbox_messages_are_sent_by_the_sweep(settings: Settings) -> None:
    from docintel.models import OutboxMessage

    with session_scope(settings.database_url) as session:
        stale = OutboxMessage(
            task="docintel.finalize", args=[f"stale-{RUN}"], created_at=utcnow() - LONG_AGO
        )
        fresh = OutboxMessage(task="docintel.finalize", args=[f"fresh-{RUN}"])
        session.add_all([stale, fresh])
    with session_scope(settings.database_url) as session:
        # What the sweep's turn takes out of the outbox, with the lease as the grace.
        sent = outbox.take_unsent(session, utcnow() - timedelta(seconds=settings.lease_s))
    assert FollowUp("docintel.finalize", (f"stale-{RUN}",)) in sent
    # A fresh row belongs to a sender that is about to send it.
    assert FollowUp("docintel.finalize", (f"fresh-{RUN}",)) not in sent
    with session_scope(settings.database_url) as session:
        left = [list(args) for args in session.scalars(select(OutboxMessage.args))]
        session.execute(delete(OutboxMessage).where(OutboxMessage.id == fresh.id))
    assert [f"stale-{RUN}"] not in left  # taken out: sent now, not again next sweep
    assert [f"fresh-{RUN}"] in left


def test_a_broker_that_lost_its_data_gets_all_waiting_work_again(
    settings: Settings, tmp_path: Path
) -> None:
    doc_id = _ingest(settings, fx.make_text_pdf(tmp_path / "flushed.pdf", [f"Flushed {RUN}", "2"]))
    first, second = _split(settings, doc_id)  # their messages were in the flushed broker
    assert not {first, second} & {f.args[0] for f in _sweep(settings) if f.args}
    sent = _sweep(settings, broker_lost=True)
    assert {first, second} <= {f.args[0] for f in sent if f.task == "docintel.process_page"}
