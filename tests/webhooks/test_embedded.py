"""Webhooks in embedded mode (SQLite, in-process queue) and the API's checks.

Real HTTP to a receiver on loopback; nothing of ours is mocked. Embedded mode
tries a delivery once, in line, and leaves a failed one to the sweep.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from docintel import migrate
from docintel.api.app import create_app
from docintel.db import session_scope
from docintel.models import OutboxMessage, WebhookDelivery
from docintel.pipeline.cancel import cancel_document
from docintel.queue.maintenance import sweep_turn
from docintel.service import accept, start, submit
from docintel.settings import Settings
from docintel.webhooks.signing import verify
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env
from tests.webhooks.receiver import Receiver

SECRET = "embedded-secret"


def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> Settings:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    migrate.upgrade(url)
    env = {
        **base_env(tmp_path, url),
        "DOCINTEL_WEBHOOK_SECRET": SECRET,
        "DOCINTEL_WEBHOOK_ALLOW_PRIVATE": "true",
        "DOCINTEL_WEBHOOK_BACKOFF_S": "0.05",
        **{f"DOCINTEL_{k.upper()}": v for k, v in extra.items()},
    }
    return apply_env(monkeypatch, env)


def _deliveries(settings: Settings) -> list[WebhookDelivery]:
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.url)))


def test_embedded_tries_once_in_line_and_the_sweep_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver(fail_first={"/hook"}) as receiver:
        settings = _settings(monkeypatch, tmp_path)
        pdf = fx.make_text_pdf(tmp_path / "memo.pdf", ["Quarterly memo"])
        doc_id = submit(settings, pdf, options={"webhook_url": receiver.url("/hook")}).document_id

        (first,) = receiver.received("/hook")
        assert first.answered == 500
        (pending,) = _deliveries(settings)
        assert (pending.status, pending.attempts, pending.last_status_code) == ("pending", 1, 500)
        assert pending.next_attempt_at is not None

        time.sleep(0.2)  # past the backoff
        sweep_turn(force=True, settings=settings)

        first, second = receiver.received("/hook")
        assert second.answered == 200
        assert first.headers["X-Docintel-Delivery"] == second.headers["X-Docintel-Delivery"]
        assert verify(
            SECRET,
            second.headers["X-Docintel-Timestamp"],
            second.body,
            second.headers["X-Docintel-Signature"],
        )
        payload = json.loads(second.body)
        assert payload["event"] == "done" and payload["document"]["id"] == str(doc_id)
        (delivered,) = _deliveries(settings)
        assert (delivered.status, delivered.attempts) == ("delivered", 2)
        assert delivered.next_attempt_at is None and delivered.delivered_at is not None

        sweep_turn(force=True, settings=settings)  # nothing is sent twice
        assert len(receiver.received("/hook")) == 2


def test_a_target_refused_at_delivery_fails_without_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Allowed when stored, refused when sent: the check runs again at each attempt.
    settings = _settings(monkeypatch, tmp_path)
    pdf = fx.make_text_pdf(tmp_path / "memo.pdf", ["Memo"])
    accepted = accept(settings, pdf, options={"webhook_url": "http://127.0.0.1:9/hook"})
    settings = _settings(monkeypatch, tmp_path, webhook_allow_private="false")
    start(settings, accepted)
    (failed,) = _deliveries(settings)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error is not None and "loopback" in failed.last_error


def test_cancel_announces_failed_with_status_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver() as receiver:
        settings = _settings(monkeypatch, tmp_path, webhook_urls=json.dumps([receiver.url("/all")]))
        pdf = fx.make_text_pdf(tmp_path / "memo.pdf", ["Memo"])
        doc_id = accept(settings, pdf).result.document_id  # stored, never started
        with session_scope(settings.database_url) as session:
            assert cancel_document(session, doc_id) == "cancelled"
        with session_scope(settings.database_url) as session:
            tasks = session.scalars(select(OutboxMessage.task)).all()
        assert "docintel.deliver_webhook" in tasks  # committed with the cancel

        sweep_turn(force=True, settings=settings)
        (request,) = receiver.received("/all")
        payload = json.loads(request.body)
        assert request.headers["X-Docintel-Event"] == "failed" == payload["event"]
        assert payload["document"]["status"] == "cancelled"
        assert payload["document"]["error"]["code"] == "cancelled"


def test_the_api_checks_webhook_urls_at_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = fx.make_text_pdf(tmp_path / "memo.pdf", ["Memo"])

    def upload(client: TestClient, url: str) -> tuple[int, str]:
        with pdf.open("rb") as handle:
            answer = client.post(
                "/v1/documents", files={"file": ("memo.pdf", handle)}, data={"webhook_url": url}
            )
        return answer.status_code, answer.text

    _settings(monkeypatch, tmp_path, webhook_allow_private="false")
    with TestClient(create_app()) as client:
        for url, words in (
            ("http://127.0.0.1:8000/hook", "loopback"),
            ("http://localhost/hook", "loopback"),
            ("http://169.254.169.254/", "link-local"),
            ("ftp://example.com/x", "not an http or https URL"),
        ):
            status, text = upload(client, url)
            assert status == 400 and words in text, (url, text)

    _settings(monkeypatch, tmp_path, webhook_secret="")
    with TestClient(create_app()) as client:
        status, text = upload(client, "https://example.com/hook")
        assert status == 400 and "DOCINTEL_WEBHOOK_SECRET" in text

    with Receiver() as receiver:
        _settings(monkeypatch, tmp_path)  # private targets allowed
        with TestClient(create_app()) as client:
            status, text = upload(client, receiver.url("/ok"))
            assert status == 202, text


def test_global_webhooks_without_a_secret_are_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="DOCINTEL_WEBHOOK_SECRET"):
        Settings(webhook_urls=["https://example.com/hook"])
    with pytest.raises(ValidationError, match="not an http or https URL"):
        Settings(webhook_urls=["gopher://example.com/"], webhook_secret="s")


def test_the_embedded_api_sweeps_by_itself_so_a_failed_webhook_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Receiver(fail_first={"/api-hook"}) as receiver:
        _settings(monkeypatch, tmp_path, sweep_interval_s="1")
        pdf = fx.make_text_pdf(tmp_path / "upload.pdf", ["Uploaded memo"])
        with TestClient(create_app()) as client:
            with pdf.open("rb") as handle:
                answer = client.post(
                    "/v1/documents",
                    files={"file": ("upload.pdf", handle)},
                    data={"webhook_url": receiver.url("/api-hook")},
                )
            assert answer.status_code == 202, answer.text
            # Nobody calls a sweep here: the API process takes its turn on its own.
            requests = receiver.wait_for("/api-hook", 2, timeout=30)
    assert [r.answered for r in requests] == [500, 200]
    assert requests[0].headers["X-Docintel-Delivery"] == requests[1].headers["X-Docintel-Delivery"]
