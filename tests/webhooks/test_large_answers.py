"""A receiver is anyone's URL: an answer of many megabytes costs a delivery attempt
neither the memory nor the time to read it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from docintel import migrate
from docintel.db import session_scope
from docintel.models import WebhookDelivery
from docintel.models.base import utcnow
from docintel.webhooks.delivery import attempt
from tests.factories import make_document
from tests.runtime import apply_env, base_env

HUGE = 200 * 1024 * 1024


class _Flood(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        block = b"x" * 65536
        try:
            for _ in range(HUGE // len(block)):
                self.wfile.write(block)
        except OSError:
            pass  # the client stopped reading, as it should

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def flood() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flood)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()


def test_a_flood_of_an_answer_is_cut_short(
    flood: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'hooks.db'}"
    migrate.upgrade(url)
    settings = apply_env(
        monkeypatch,
        {
            **base_env(tmp_path, url),
            "DOCINTEL_WEBHOOK_SECRET": "s3cret",
            "DOCINTEL_WEBHOOK_ALLOW_PRIVATE": "true",
        },
    )
    with session_scope(settings.database_url) as session:
        doc = make_document(session)
        delivery = WebhookDelivery(
            id=uuid.uuid4(),
            document_id=doc.id,
            url=flood,
            event="done",
            payload={"x": 1},
            next_attempt_at=utcnow(),  # due now
        )
        session.add(delivery)
        delivery_id = delivery.id
    started = time.monotonic()
    retry_in = attempt(settings, str(delivery_id))
    assert time.monotonic() - started < 5  # 200 MB were offered; a few hundred bytes read
    assert retry_in is not None  # a 500: tried again later
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(WebhookDelivery)).one()
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert row.last_error is not None and row.last_error == "HTTP 500: " + "x" * 200
