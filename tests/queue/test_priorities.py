"""Queued work has priorities: a small document does not wait behind a big one's pages."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.pipeline.context import FollowUp
from docintel.pipeline.priority import page_priority
from docintel.queue.base import dispatch
from docintel.service import submit, wait
from tests import services
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env, running_worker


@pytest.mark.parametrize(
    ("number", "priority"), [(1, 2), (16, 2), (17, 3), (33, 4), (112, 8), (113, 9), (10_000, 9)]
)
def test_pages_are_ranked_by_their_number(number: int, priority: int) -> None:
    assert page_priority(number) == priority


@pytest.mark.redis
def test_each_priority_has_its_own_redis_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    with services.redis_database() as broker:
        apply_env(monkeypatch, base_env(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", broker))
        dispatch(
            [
                FollowUp("docintel.process_page", (7,), priority=page_priority(40)),
                FollowUp("docintel.split", (str(uuid.uuid4()),)),
                FollowUp("docintel.finalize", (str(uuid.uuid4()),)),
                FollowUp("docintel.ocr_batch", ("gpu",), queue="gpu"),
            ]
        )
        client = redis.Redis.from_url(broker)
        lengths = {key: client.llen(key) for key in ("cpu", "cpu:1", "cpu:4", "gpu")}
    assert lengths == {"cpu": 1, "cpu:1": 1, "cpu:4": 1, "gpu": 1}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_a_small_document_overtakes_a_big_one(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4()
    big_pdf = fx.make_text_pdf(tmp_path / "big.pdf", [f"Big {run} page {n}" for n in range(80)])
    small_pdf = fx.make_text_pdf(tmp_path / "small.pdf", [f"Small {run}"])
    with services.redis_database() as broker:
        env = base_env(tmp_path, pg_url, broker)
        settings = apply_env(monkeypatch, env)
        big = submit(settings, big_pdf).document_id
        small = submit(settings, small_pdf).document_id
        with running_worker(env, concurrency=1):  # one at a time: the order is the queue's
            final = wait(settings, [big, small], timeout_s=240)
    assert [p.status for p in final] == [DocumentStatus.DONE, DocumentStatus.DONE]

    with session_scope(pg_url) as session:
        small_done = session.scalar(select(Document.finished_at).where(Document.id == small))
        big_done = session.scalar(select(Document.finished_at).where(Document.id == big))
        assert small_done is not None and big_done is not None and small_done < big_done
        big_pages_before = session.scalar(
            select(func.count())
            .select_from(Page)
            .where(
                Page.document_id == big,
                Page.status == PageStatus.DONE,
                Page.updated_at <= small_done,
            )
        )
    # In arrival order all 80 would come first; with priorities, at most the
    # pages ranked with the small document's page (the first 16) and a few
    # already running or taken when it arrived.
    assert big_pages_before is not None and big_pages_before <= 20
