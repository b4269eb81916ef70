"""A render that never returns: stopped by the task time limit, retried, then failed.

Page 2 of the document hangs (``DOCINTEL_TEST_STAGE_DELAYS`` ``render:2``); its
neighbours do not. Each run of it is stopped by the time limit and its lease
lapses like a dead worker's, so it is taken again, until it has used its
``DOCINTEL_MAX_PAGE_ATTEMPTS`` and fails with ``timeout``. The same worker then
processes a normal document.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from docintel.db import session_scope
from docintel.models import Page, PageStatus
from docintel.service import progress, submit
from tests import services
from tests.faults.audit import finished, make_batch, tally
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env, running_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

ATTEMPTS = 2


def test_hung_page_times_out_after_its_attempts_and_the_worker_goes_on(
    own_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ((hanging, texts),) = make_batch(tmp_path, documents=1, pages=3).items()
    with services.redis_database() as broker:
        env = {
            **base_env(tmp_path, own_db, broker),
            "DOCINTEL_TASK_TIME_LIMIT_S": "5",
            "DOCINTEL_VISIBILITY_TIMEOUT_S": "60",  # above the time limit, as it must be
            "DOCINTEL_MAX_PAGE_ATTEMPTS": str(ATTEMPTS),
            "DOCINTEL_LEASE_S": "3",
            "DOCINTEL_SWEEP_INTERVAL_S": "1",
            "DOCINTEL_TEST_STAGE_DELAYS": '{"render:2": 3600}',
        }
        settings = apply_env(monkeypatch, env)
        with running_worker(env, concurrency=1) as worker:
            doc_id = submit(settings, hanging).document_id
            started = time.monotonic()
            wait_until(finished(settings, [doc_id]), 90, "the hung page to give up")
            gave_up_s = time.monotonic() - started

            normal = fx.make_text_pdf(tmp_path / "after.pdf", ["A normal page afterwards"])
            after_id = submit(settings, normal).document_id
            recover_s = wait_until(finished(settings, [after_id]), 60, "the next document")
            assert progress(settings, [after_id])[0].status == "done", worker.log()
            assert worker.proc.poll() is None

    with session_scope(settings.database_url) as session:
        pages = {
            p.number: p for p in session.scalars(select(Page).where(Page.document_id == doc_id))
        }
    hung = pages[2]
    assert (hung.status, hung.error_code, hung.attempts) == (
        PageStatus.FAILED,
        "timeout",
        ATTEMPTS,
    ), worker.log()
    assert progress(settings, [doc_id])[0].status == "partial"
    count = tally(settings, {doc_id: texts})
    count.row(f"render hangs on 1 page (gave up after {gave_up_s:.1f}s)", recover_s)
    # The hung page is the only one not done, and it failed on purpose.
    assert (count.done, count.duplicated, count.lost) == (count.expected - 1, 0, 1)
