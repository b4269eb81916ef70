"""Webhooks end to end: an upload over the API, a real worker on Redis and Postgres,
and a receiver on loopback that fails the first request of each webhook."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from docintel.db import session_scope
from docintel.models import WebhookDelivery
from docintel.settings import Settings
from docintel.webhooks.signing import verify
from tests import services
from tests.api.server import running_api
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env, running_worker
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

SECRET = "distributed-secret"


def _settled(settings: Settings, doc_id: str, timeout: float) -> list[WebhookDelivery]:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(settings.database_url) as session:
            rows = list(
                session.scalars(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.document_id == uuid.UUID(doc_id))
                    .order_by(WebhookDelivery.url)
                )
            )
        if len(rows) == 2 and all(r.status != "pending" for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries not settled in {timeout}s: {rows}")
        time.sleep(0.2)


def test_webhooks_are_signed_and_retried_after_the_receiver_fails_once(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Paths of this run only: the database is shared with earlier tests (whose documents
    # this worker may finish, announcing them to the global URL too).
    run = uuid.uuid4().hex[:8]
    word = f"order{run}"  # a word no other document in the shared database has
    pdf = fx.make_text_pdf(tmp_path / "invoice.pdf", [f"Invoice {word}\nTotal due 99.00"])
    global_path, own_path = f"/global-{run}", f"/own-{run}"
    with (
        Receiver(fail_first={global_path, own_path}) as receiver,
        services.redis_database() as broker,
    ):
        env = {
            **base_env(tmp_path, pg_url, broker),
            "DOCINTEL_API_KEYS_REQUIRED": "false",
            "DOCINTEL_WEBHOOK_SECRET": SECRET,
            "DOCINTEL_WEBHOOK_URLS": json.dumps([receiver.url(global_path)]),
            "DOCINTEL_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on loopback
            "DOCINTEL_WEBHOOK_BACKOFF_S": "0.5",
        }
        settings = apply_env(monkeypatch, env)
        # Over HTTP: uvicorn on loopback, a worker process, Postgres and Redis.
        with running_worker(env, concurrency=2) as worker, running_api(env) as api:
            with pdf.open("rb") as handle:
                answer = httpx.post(
                    f"{api.url}/v1/documents",
                    files={"file": ("invoice.pdf", handle)},
                    data={"webhook_url": receiver.url(own_path)},
                    timeout=30,
                )
            assert answer.status_code == 202, answer.text
            doc_id = answer.json()["document_id"]
            try:
                deliveries = _settled(settings, doc_id, timeout=45)
            except AssertionError:
                print(worker.log())
                raise
            document = httpx.get(f"{api.url}/v1/documents/{doc_id}").json()
            assert document["document"]["status"] == "done"
            found = httpx.get(f"{api.url}/v1/search", params={"q": word}).json()["hits"]
            assert [(h["document_id"], h["page"]) for h in found] == [(doc_id, 1)]
            assert f"<mark>{word}</mark>" in found[0]["snippet"]

    seen = [(r.path, r.headers.get("X-Docintel-Delivery"), r.answered) for r in receiver.requests]
    assert [(d.status, d.attempts, d.last_status_code) for d in deliveries] == [
        ("delivered", 2, 200),
        ("delivered", 2, 200),
    ], (seen, [(d.id, d.url) for d in deliveries], worker.log())
    for delivery, path in zip(deliveries, (global_path, own_path), strict=True):
        assert delivery.url == receiver.url(path) and delivery.event == "done"
        failed, accepted = receiver.received(path, str(delivery.id))
        assert (failed.answered, accepted.answered) == (500, 200)
        for request in (failed, accepted):
            assert request.headers["X-Docintel-Delivery"] == str(delivery.id)
            assert request.headers["X-Docintel-Event"] == "done"
            assert request.headers["Content-Type"] == "application/json"
            assert verify(
                SECRET,
                request.headers["X-Docintel-Timestamp"],
                request.body,
                request.headers["X-Docintel-Signature"],
            )
            assert not verify(
                "another-secret",
                request.headers["X-Docintel-Timestamp"],
                request.body,
                request.headers["X-Docintel-Signature"],
            )
        payload = json.loads(accepted.body)
        assert payload["event"] == "done"
        assert payload["document"] == {
            "id": doc_id,
            "filename": "invoice.pdf",
            "status": "done",
            "source": "api",
            "page_count": 1,
            "pages_done": 1,
            "pages_failed": 0,
            "error": None,
        }
        assert payload["links"]["document"] == f"/v1/documents/{doc_id}"
