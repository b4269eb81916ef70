"""Outages of the blob store or the broker are retried; they never fail a document.

Real Postgres, and really unreachable services: a port nobody listens on.
"""

from __future__ import annotations

import hashlib
import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page
from docintel.pipeline import split
from docintel.pipeline.context import StageContext
from docintel.pipeline.ingest import ingest_file
from docintel.queue.base import StageTask, run_stage
from docintel.queue.tasks import _fail_document
from docintel.service import submit
from docintel.storage import StorageUnavailable, original_key
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

pytestmark = pytest.mark.postgres


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on exit: connections are refused


@pytest.fixture
def dead_s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return {
        "DOCINTEL_STORAGE_URL": "s3://docintel/blobs",
        "DOCINTEL_S3_ENDPOINT_URL": f"http://127.0.0.1:{_dead_port()}",
        "DOCINTEL_S3_REGION": "us-east-1",
    }


def test_blob_store_outage_is_retried_not_recorded_as_a_failure(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_s3: dict[str, str]
) -> None:
    settings = apply_env(monkeypatch, base_env(tmp_path, pg_url) | dead_s3)
    path = fx.make_text_pdf(tmp_path / "waiting.pdf", [f"Stored before the outage {uuid.uuid4()}"])
    sha = hashlib.sha256(path.read_bytes()).hexdigest()

    # Upload during the outage: nothing is half-created, the caller sees a retryable error.
    with pytest.raises(StorageUnavailable):
        submit(settings, path)
    with session_scope(settings.database_url) as session:
        assert not session.scalar(select(func.count()).where(Document.sha256 == sha))

    # A document whose original went in before the outage: its split cannot fetch it.
    doc_id = uuid.uuid4()
    with session_scope(settings.database_url) as session:
        session.add(
            Document(
                id=doc_id,
                sha256=sha,
                filename=path.name,
                media_type="application/pdf",
                size_bytes=path.stat().st_size,
                original_key=original_key(sha),
            )
        )
    with pytest.raises(StorageUnavailable) as raised:
        run_stage(split.split_document, str(doc_id), on_failure=_fail_document)
    assert isinstance(raised.value, StageTask.autoretry_for)  # Celery retries it, with backoff
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, doc_id)
        assert doc is not None
        assert (doc.status, doc.error_code) == (DocumentStatus.QUEUED, None)
        session.delete(doc)


def test_broker_outage_after_commit_is_retried(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stage rows on a working setup first (eager), then lose the broker.
    settings = apply_env(monkeypatch, base_env(tmp_path, pg_url))
    # Unique bytes: the session database is shared, equal bytes would dedup.
    path = fx.make_text_pdf(tmp_path / "two.pdf", [f"One {uuid.uuid4()}", "Two"])
    with session_scope(settings.database_url) as session:
        doc_id = ingest_file(StageContext(session, settings), path).document_id
    dead_broker = f"redis://127.0.0.1:{_dead_port()}/0"
    apply_env(monkeypatch, base_env(tmp_path, pg_url, dead_broker))

    with pytest.raises(Exception) as raised:
        run_stage(split.split_document, str(doc_id))
    assert isinstance(raised.value, StageTask.autoretry_for), repr(raised.value)
    with session_scope(settings.database_url) as session:
        # The split itself committed; its retry finds the rows and sends the pages again.
        assert session.scalar(select(func.count()).where(Page.document_id == doc_id)) == 2
        doc = session.get(Document, doc_id)
        assert doc is not None and doc.status == DocumentStatus.PROCESSING
        doc.status = DocumentStatus.CANCELLED  # nothing for later sweeps to pick up
