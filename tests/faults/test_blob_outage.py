"""Blob storage unavailable for a while: the S3 endpoint stopped and restarted, and
a local store folder made read-only. Pages wait (their tasks retry with backoff)
and finish once the store is back; none fails, none is written twice.

The originals go into the store at upload, so the documents are submitted while
it is up; the outage starts once pages are being rendered (each render writes
its page image to the store).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import boto3
import pytest

from docintel.service import submit
from tests import services
from tests.faults.audit import finished, make_batch, tally
from tests.faults.servers import S3Server, read_only
from tests.runtime import apply_env, base_env, running_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

DOWN_S = 5.0
BUCKET = "docintel-faults"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _run_through_outage(
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    outage: Callable[[], AbstractContextManager[None]],
    fault: str,
) -> None:
    batch = make_batch(tmp_path, documents=2, pages=3)
    env = {
        **env,
        "DOCINTEL_LEASE_S": "3",
        "DOCINTEL_SWEEP_INTERVAL_S": "1",
        "DOCINTEL_TEST_STAGE_DELAYS": '{"render": 1}',
    }
    settings = apply_env(monkeypatch, env)
    with running_worker(env, concurrency=2) as worker:
        ids = {submit(settings, path).document_id: texts for path, texts in batch.items()}
        all_pages = sum(len(texts) for texts in batch.values())
        wait_until(finished(settings, list(ids), pages=1), 60, "the first page")
        with outage():
            assert not finished(settings, list(ids), pages=all_pages)(), "ended before the fault"
            time.sleep(DOWN_S)
        try:
            recover_s = wait_until(finished(settings, list(ids)), 120, "every document")
        except AssertionError:
            raise AssertionError(worker.log()) from None
    count = tally(settings, ids)
    count.row(fault, recover_s)
    assert (count.done, count.duplicated, count.lost) == (count.expected, 0, 0), worker.log()


@pytest.fixture
def s3() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_s3_endpoint_stopped_and_restarted(
    own_db: str, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {**AWS, "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config")}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket=BUCKET)

    @contextmanager
    def endpoint_down() -> Iterator[None]:
        s3.stop()
        try:
            yield
        finally:
            s3.start()

    with services.redis_database() as broker:
        env = {
            **base_env(tmp_path, own_db, broker),
            **AWS,
            "DOCINTEL_STORAGE_URL": f"s3://{BUCKET}/blobs",
            "DOCINTEL_S3_ENDPOINT_URL": s3.endpoint,
            "DOCINTEL_S3_REGION": "us-east-1",
        }
        _run_through_outage(env, tmp_path, monkeypatch, endpoint_down, "S3 endpoint down")


def test_local_store_read_only_for_a_while(
    own_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    with services.redis_database() as broker:
        env = base_env(tmp_path, own_db, broker)
        _run_through_outage(
            env, tmp_path, monkeypatch, lambda: read_only(blobs), "local store read-only"
        )
