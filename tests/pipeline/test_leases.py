"""Leases on both databases: the fence refuses stale writers, transient errors give
pages back, retries take their claims back, sweeps take turns."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from docintel.db import session_scope
from docintel.geometry import TextLine
from docintel.models import Document, DocumentStatus, Line, Page, PageStatus, TextSource
from docintel.models.base import utcnow
from docintel.pipeline import split
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.ingest import ingest_file
from docintel.pipeline.leases import claim
from docintel.pipeline.page_results import finish_page
from docintel.queue.app import app
from docintel.queue.base import StageTask, run_stage
from docintel.queue.maintenance import sweep_turn
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return apply_env(monkeypatch, base_env(tmp_path, database_url))


def _split_pages(settings: Settings, tmp_path: Path, n: int = 1) -> tuple[uuid.UUID, list[int]]:
    """A document split into ``n`` pending pages, none of them sent anywhere."""
    texts = [f"Lease page {k} {uuid.uuid4().hex[:8]}" for k in range(n)]
    path = fx.make_text_pdf(tmp_path / f"{uuid.uuid4().hex[:8]}.pdf", texts)
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        doc_id = ingest_file(ctx, path, source="test-leases").document_id
        follow_ups = split.split_document(ctx, str(doc_id))
    return doc_id, [f.args[0] for f in follow_ups]


def _line(text: str) -> TextLine:
    return TextLine(text=text, polygon=(0, 0, 10, 0, 10, 5, 0, 5), confidence=1.0)


def _lapse(settings: Settings, page_id: int) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(
            update(Page)
            .where(Page.id == page_id)
            .values(lease_expires_at=utcnow() - timedelta(minutes=5))
        )


def test_a_stale_holder_cannot_write_over_the_one_that_took_over(
    settings: Settings, tmp_path: Path
) -> None:
    _, (page_id,) = _split_pages(settings, tmp_path)
    with session_scope(settings.database_url) as session:
        stale = claim(
            session, [page_id], PageStatus.PENDING, holder="paused", lease_s=60, max_attempts=3
        )
    _lapse(settings, page_id)  # the paused holder stopped renewing
    with session_scope(settings.database_url) as session:
        fresh = claim(
            session, [page_id], PageStatus.PENDING, holder="other", lease_s=60, max_attempts=3
        )
    assert stale is not None and fresh is not None and fresh.token != stale.token

    with session_scope(settings.database_url) as session:
        size = (100, 100)
        assert finish_page(
            session, fresh, page_id, [_line("new")], size=size, source=TextSource.NATIVE, engine="e"
        )
    with session_scope(settings.database_url) as session:
        # The paused holder wakes up and writes: refused, and no line of it lands.
        assert not finish_page(
            session,
            stale,
            page_id,
            [_line("old"), _line("old")],
            size=size,
            source=TextSource.OCR,
            engine="e",
        )
    with session_scope(settings.database_url) as session:
        page = session.get(Page, page_id)
        assert page is not None
        assert (page.status, page.text, page.text_source) == (PageStatus.DONE, "new", "native")
        texts = session.scalars(select(Line.text).where(Line.page_id == page_id)).all()
        assert texts == ["new"]


def test_nothing_is_written_to_a_document_that_stopped_processing(
    settings: Settings, tmp_path: Path
) -> None:
    doc_id, (page_id,) = _split_pages(settings, tmp_path)
    with session_scope(settings.database_url) as session:
        lease = claim(
            session, [page_id], PageStatus.PENDING, holder="h", lease_s=60, max_attempts=3
        )
        assert lease is not None
        session.execute(
            update(Document).where(Document.id == doc_id).values(status=DocumentStatus.CANCELLED)
        )
    with session_scope(settings.database_url) as session:
        assert not finish_page(
            session,
            lease,
            page_id,
            [_line("late")],
            size=(1, 1),
            source=TextSource.NATIVE,
            engine="e",
        )
        assert not session.scalar(select(func.count()).where(Line.page_id == page_id))


def test_a_transient_error_gives_the_pages_back_for_the_retry(
    settings: Settings, tmp_path: Path
) -> None:
    """Was: the claim stayed, and the retry found the page held (by itself) and did nothing."""
    _, (page_id,) = _split_pages(settings, tmp_path)

    def cut_off(ctx: StageContext, pid: int) -> list[FollowUp]:
        assert ctx.claim([pid], PageStatus.PENDING) is not None
        raise OperationalError("UPDATE pages ...", {}, ConnectionError("server closed"))

    with pytest.raises(OperationalError):
        run_stage(cut_off, page_id)
    with session_scope(settings.database_url) as session:
        page = session.get(Page, page_id)
        assert page is not None
        assert (page.status, page.claim_token, page.lease_expires_at) == ("pending", None, None)
        # Anyone may take it now, not after the lease would have lapsed.
        assert claim(
            session, [page_id], PageStatus.PENDING, holder="retry", lease_s=60, max_attempts=3
        )


def test_a_permanent_error_fails_the_held_pages_through_the_fence(
    settings: Settings, tmp_path: Path
) -> None:
    _, (page_id,) = _split_pages(settings, tmp_path)

    def broken(ctx: StageContext, pid: int) -> list[FollowUp]:
        assert ctx.claim([pid], PageStatus.PENDING) is not None
        raise RuntimeError("a bug")

    run_stage(broken, page_id)
    with session_scope(settings.database_url) as session:
        page = session.get(Page, page_id)
        assert page is not None
        assert (page.status, page.error_code, page.claim_token) == ("failed", "internal", None)
        assert "a bug" in (page.error_message or "")


def test_sweeps_take_turns(settings: Settings) -> None:
    assert sweep_turn(force=True) is not None
    # Right after one sweep, others skip their turn until the interval has passed.
    assert sweep_turn(force=False) is None


def test_an_ocr_engine_that_cannot_load_fails_its_pages_instead_of_leaving_them_waiting(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docintel.pipeline import ocr, page

    settings = apply_env(monkeypatch, base_env(tmp_path, database_url))
    path = fx.make_scanned_pdf(tmp_path / "scan.pdf", [f"Engine {uuid.uuid4().hex[:8]}\nline"])
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        doc_id = ingest_file(ctx, path).document_id
        (follow_up,) = split.split_document(ctx, str(doc_id))
    with session_scope(settings.database_url) as session:
        page.process_page(StageContext(session, settings), follow_up.args[0])
    settings = apply_env(monkeypatch, {"DOCINTEL_OCR_ENGINE": "no-such-engine"})

    run_stage(ocr.ocr_batch)
    with session_scope(settings.database_url) as session:
        row = session.get(Page, follow_up.args[0])
        assert row is not None
        assert (row.status, row.error_code, row.claim_token) == ("failed", "ocr_failed", None)
        assert "the no-such-engine OCR engine cannot run" in (row.error_message or "")


def test_an_embedded_run_takes_its_database_lock_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else a second run, given the same file, would take the first run's live leases."""
    import subprocess

    from docintel import migrate
    from docintel.service import submit

    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    settings = apply_env(monkeypatch, base_env(tmp_path, url))
    submit(settings, fx.make_text_pdf(tmp_path / "new.pdf", [f"New {uuid.uuid4().hex[:8]}"]))
    other_run = subprocess.run(["flock", "--nonblock", f"{tmp_path / 'embedded.db'}.lock", "true"])
    assert other_run.returncode != 0  # held by this process, for as long as it lives


def test_an_ocr_page_that_already_cost_an_attempt_goes_alone(
    settings: Settings, tmp_path: Path
) -> None:
    """A page that killed its batch's process must not take healthy batch-mates down
    with it on every retry, until they all fail with ``timeout``."""
    from docintel.pipeline.leases import QueueFilter, claim_batch

    _, page_ids = _split_pages(settings, tmp_path, n=3)
    with session_scope(settings.database_url) as session:
        session.execute(update(Page).where(Page.id.in_(page_ids)).values(status=PageStatus.OCR))
        session.execute(update(Page).where(Page.id == page_ids[1]).values(attempts=1))

    def batch() -> tuple[int, ...]:
        with session_scope(settings.database_url) as session:
            task = uuid.uuid4().hex  # every ocr_batch message is a task of its own
            lease = claim_batch(
                session,
                PageStatus.OCR,
                8,
                on=QueueFilter("cpu", unrouted=True),  # set to OCR here: no queue recorded
                holder=task,
                lease_s=60,
                max_attempts=3,
            )
            return lease.page_ids if lease else ()

    ours = set(page_ids)
    assert set(batch()) & ours == {page_ids[1]}
    assert set(batch()) & ours == {page_ids[0], page_ids[2]}


def _always_unavailable(ctx: StageContext, pid: int) -> list[FollowUp]:
    assert ctx.claim([pid], PageStatus.PENDING) is not None
    raise ConnectionError("the blob store refuses this page, every time")


@app.task(base=StageTask, name="tests.always_unavailable")
def _always_unavailable_task(pid: int) -> None:
    run_stage(_always_unavailable, pid)


def test_the_last_retry_of_an_outage_fails_the_page_instead_of_looping(
    settings: Settings, tmp_path: Path
) -> None:
    _, (page_id,) = _split_pages(settings, tmp_path)
    # Celery's own retry count, as the last retry carries it.
    _always_unavailable_task.apply(args=(page_id,), retries=StageTask.max_retries, throw=False)
    with session_scope(settings.database_url) as session:
        page = session.get(Page, page_id)
        assert page is not None
        assert (page.status, page.error_code, page.claim_token) == ("failed", "internal", None)
        assert "retries" in (page.error_message or "")
