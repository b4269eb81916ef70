"""Broker queue lengths in /metrics, read from a real Redis with messages nobody consumed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from docintel.api import keys
from docintel.api.app import create_app
from docintel.db import session_scope
from docintel.queue.depth import queue_lengths
from docintel.service import submit
from tests import services
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_waiting_messages_are_counted_per_queue_over_every_priority(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with services.redis_database() as broker:
        settings = apply_env(monkeypatch, base_env(tmp_path, pg_url, broker))
        assert queue_lengths(settings) == {"cpu": 0, "gpu": 0}
        # No worker runs: each submit leaves its split message in the cpu queue; the
        # small document and the larger one are sent at different priorities.
        submit(settings, fx.make_text_pdf(tmp_path / "one.pdf", ["one page"]))
        submit(settings, fx.make_text_pdf(tmp_path / "many.pdf", ["page"] * 30))
        assert queue_lengths(settings) == {"cpu": 2, "gpu": 0}

        with session_scope(settings.database_url) as session:
            key = keys.create_key(session, "metrics test")
        with TestClient(create_app()) as client:
            text = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
        assert 'docintel_queue_messages{queue="cpu"} 2.0' in text, text
        assert "docintel_broker_up 1.0" in text

    dead = apply_env(monkeypatch, base_env(tmp_path, pg_url, "redis://127.0.0.1:1/0"))
    assert dead.broker_url.endswith(":1/0")
    with TestClient(create_app()) as client:
        text = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    assert "docintel_broker_up 0.0" in text and "docintel_queue_messages" not in text
