"""A worker SIGKILLed mid-document: a new worker finishes it, every page exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Line, Page, PageStatus
from docintel.service import progress, submit, wait
from tests import services
from tests.fixtures import documents as fx
from tests.runtime import WorkerProcess, apply_env, base_env, running_worker
from tests.text_metrics import cer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

PAGES = [f"Scanned page number {n}\nwith a second line of words" for n in range(1, 9)]


def test_document_completes_after_its_worker_is_killed(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with services.redis_database() as broker:
        env = {
            **base_env(tmp_path, pg_url, broker),
            # Short clocks so the test sees recovery in seconds.
            "DOCINTEL_LEASE_S": "3",
            "DOCINTEL_SWEEP_INTERVAL_S": "1",
        }
        settings = apply_env(monkeypatch, env)
        path = fx.make_scanned_pdf(tmp_path / "long-scan.pdf", PAGES, dpi=100)

        first = WorkerProcess(env, concurrency=1)
        first.wait_ready()
        doc_id = submit(settings, path).document_id
        deadline = time.monotonic() + 120
        while True:  # kill once work is under way but not finished
            (state,) = progress(settings, [doc_id])
            if state.pages_finished >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        first.kill()
        (state,) = progress(settings, [doc_id])
        assert not state.terminal, "the document finished before the kill; make it longer"

        with running_worker(env, concurrency=1) as second:
            # Nobody runs a sweeper: the new worker takes its turn on its own.
            (final,) = wait(settings, [doc_id], timeout_s=180)
            assert final.status == "done", second.log()

        with session_scope(settings.database_url) as session:
            pages = session.scalars(select(Page).where(Page.document_id == doc_id)).all()
            assert sorted(p.number for p in pages) == list(range(1, len(PAGES) + 1))
            assert all(p.status == PageStatus.DONE for p in pages)
            for page in pages:
                # Lines written twice would double the text and blow up the error rate.
                assert cer(page.text or "", PAGES[page.number - 1]) < 0.2, page.text
                lines = session.scalar(select(func.count()).where(Line.page_id == page.id))
                assert lines == len((page.text or "").splitlines())
