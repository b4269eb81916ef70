"""Scheduled ingestion from an S3 prefix, against a real S3-compatible server (moto)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import select

from docintel import migrate
from docintel.db import session_scope
from docintel.ingestion import scan as scan_module
from docintel.ingestion.catalog import SourceSpec, add_source
from docintel.ingestion.scan import scan_all
from docintel.models import Document, DocumentStatus, SourceFile
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env
from tests.storage.conftest import REGION


@pytest.fixture(autouse=True)
def back_to_back_scans_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # A second scan right after the first may take an object (tests/ingestion tests the floor).
    monkeypatch.setattr(scan_module, "_MIN_UNCHANGED", timedelta(0))


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, aws_env: None
) -> Settings:
    url = f"sqlite:///{tmp_path / 's3inbox.db'}"
    migrate.upgrade(url)
    env = {
        **base_env(tmp_path, url),
        "DOCINTEL_S3_ENDPOINT_URL": moto_endpoint,
        "DOCINTEL_S3_REGION": REGION,
    }
    return apply_env(monkeypatch, env)


def client(endpoint: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=REGION)


def test_objects_are_imported_once_and_tagged(
    settings: Settings, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    s3 = client(moto_endpoint)
    prefix = f"inbox-{uuid.uuid4().hex}"
    with session_scope(settings.database_url) as session:
        add_source(session, SourceSpec("bucket", f"s3://{s3_bucket}/{prefix}"))
    pdf = fx.make_text_pdf(tmp_path / "scan.pdf", ["Delivery note 12"]).read_bytes()
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}/2026/Lieferschein Nr 12.pdf", Body=pdf)
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}/notes.txt", Body=b"just text")
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}/.upload-in-progress", Body=b"%PDF")
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}-other/not-ours.pdf", Body=pdf)

    (first,) = scan_all(settings)
    assert (first.listed, first.waiting, first.imported) == (2, 2, [])
    (second,) = scan_all(settings)
    assert second.refused == ["notes.txt"]
    (doc_id,) = second.imported
    (third,) = scan_all(settings)
    assert third.imported == [] and third.refused == []  # tagged, and booked: never again

    with session_scope(settings.database_url) as session:
        doc = session.get(Document, doc_id)
        assert doc is not None
        assert (doc.filename, doc.source, doc.status) == (
            "Lieferschein Nr 12.pdf",
            "bucket",
            DocumentStatus.DONE,
        )
        states = dict(session.execute(select(SourceFile.path, SourceFile.state)).all())
    assert states == {"2026/Lieferschein Nr 12.pdf": "imported", "notes.txt": "failed"}

    def tags(key: str) -> dict[str, str]:
        answer = s3.get_object_tagging(Bucket=s3_bucket, Key=f"{prefix}/{key}")
        return {t["Key"]: t["Value"] for t in answer["TagSet"]}

    assert tags("2026/Lieferschein Nr 12.pdf") == {"docintel": "processed"}
    assert tags("notes.txt") == {"docintel": "failed"}


def test_a_bucket_that_refuses_listing_is_reported(
    settings: Settings, s3_bucket: str, moto_endpoint: str
) -> None:
    with session_scope(settings.database_url) as session:
        add_source(session, SourceSpec("nobucket", "s3://no-such-bucket-here/in"))
    (report,) = scan_all(settings)
    assert report.error is not None and "NoSuchBucket" in report.error
