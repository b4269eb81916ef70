"""Two finalizes of one document at the same moment (the last two pages of an embedded
run finishing on two threads) settle it once: one latency record, one announcement."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import DocumentStatus, Job, Page, PageStatus, StageLatency, WebhookDelivery
from docintel.pipeline.context import StageContext
from docintel.pipeline.finalize import finalize_document
from tests.factories import make_document
from tests.runtime import apply_env, base_env


def test_concurrent_finalizes_settle_a_document_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = apply_env(
        monkeypatch,
        {
            **base_env(tmp_path, database_url),
            "DOCINTEL_WEBHOOK_SECRET": "s3cret",
            "DOCINTEL_WEBHOOK_URLS": '["https://hooks.example.com/docintel"]',
        },
    )
    pages = 6
    with session_scope(settings.database_url) as session:
        doc = make_document(session, status=DocumentStatus.PROCESSING, page_count=pages)
        doc_id = doc.id
        session.add(Job(document_id=doc_id, pages_total=pages))
        session.add_all(
            Page(document_id=doc_id, number=n, status=PageStatus.DONE, timings={"render": 0.2})
            for n in range(1, pages + 1)
        )
    with session_scope(settings.database_url) as session:
        recorded_before = session.scalar(
            select(func.coalesce(func.sum(StageLatency.count), 0)).where(
                StageLatency.stage == "render"
            )
        )

    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def finalize() -> None:
        try:
            start.wait()
            with session_scope(settings.database_url) as session:
                finalize_document(StageContext(session, settings), str(doc_id))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=finalize) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with session_scope(settings.database_url) as session:
        recorded = session.scalar(
            select(func.coalesce(func.sum(StageLatency.count), 0)).where(
                StageLatency.stage == "render"
            )
        )
        deliveries = session.scalar(
            select(func.count()).where(WebhookDelivery.document_id == doc_id)
        )
        status = session.scalar(select(Job.status).where(Job.document_id == doc_id))
    assert recorded - recorded_before == pages  # each page's render counted once
    assert deliveries == 1  # announced once
    assert status == "done"
