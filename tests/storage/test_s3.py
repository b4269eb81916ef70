"""The S3 store against a real S3-compatible HTTP server (moto on loopback)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from docintel.storage import (
    BlobNotFound,
    StorageUnavailable,
    open_store,
    original_key,
    page_image_key,
)
from docintel.storage.s3 import S3BlobStore
from tests.storage.conftest import BUCKET, REGION, BlobStoreContract, sha256, write_file

MiB = 1024 * 1024


class TestS3Contract(BlobStoreContract):
    @pytest.fixture
    def store(self, s3_store: S3BlobStore) -> S3BlobStore:
        return s3_store


def raw_client(store: S3BlobStore) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=store.endpoint_url, region_name=REGION)


def count_writes(store: S3BlobStore) -> list[str]:
    """Record every request that could create an object, as the server would see it."""
    calls: list[str] = []

    def record(event_name: str, **kwargs: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    for op in ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject"):
        store.client.meta.events.register(f"before-call.s3.{op}", record)
    return calls


def test_second_put_of_same_bytes_does_not_rewrite(s3_store: S3BlobStore, tmp_path: Path) -> None:
    data = b"same pdf" * 10_000
    key = original_key(sha256(data))
    src = tmp_path / "doc.pdf"
    src.write_bytes(data)
    calls = count_writes(s3_store)

    s3_store.put_bytes(key, data)
    assert calls == ["PutObject"]
    assert s3_store.put_bytes(key, data) == key
    assert s3_store.put_file(key, src) == key
    assert calls == ["PutObject"]


def test_objects_live_under_the_prefix(make_s3_store: Callable[..., S3BlobStore]) -> None:
    one = make_s3_store("tenants/one")
    two = make_s3_store("tenants/two/")
    one.put_bytes("a/b.txt", b"one")
    two.put_bytes("a/b.txt", b"two")

    assert one.url == f"s3://{BUCKET}/tenants/one"
    assert two.url == f"s3://{BUCKET}/tenants/two"
    assert one.object_key("a/b.txt") == "tenants/one/a/b.txt"
    assert one.get_bytes("a/b.txt") == b"one"
    assert two.get_bytes("a/b.txt") == b"two"
    listed = raw_client(one).list_objects_v2(Bucket=BUCKET, Prefix="tenants/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "tenants/one/a/b.txt",
        "tenants/two/a/b.txt",
    ]
    two.delete("a/b.txt")
    assert one.exists("a/b.txt")


def test_store_without_prefix(make_s3_store: Callable[..., S3BlobStore]) -> None:
    store = make_s3_store("")
    assert store.url == f"s3://{BUCKET}"
    key = "noprefix-test/k"
    store.put_bytes(key, b"x")
    assert raw_client(store).get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"x"
    store.delete(key)


def test_put_file_streams_in_parts(
    make_s3_store: Callable[..., S3BlobStore], tmp_path: Path
) -> None:
    # 5 MiB is S3's smallest part; a 12 MiB file then goes up as three parts.
    store = make_s3_store(
        transfer_config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    )
    src = write_file(tmp_path / "scan.pdf", 12 * MiB, seed=7)
    digest = sha256(src.read_bytes())
    key = original_key(digest)

    store.put_file(key, src)

    head = raw_client(store).head_object(Bucket=BUCKET, Key=store.object_key(key))
    assert head["ETag"].strip('"').endswith("-3"), "not a multipart upload"
    assert store.size(key) == 12 * MiB
    dest = tmp_path / "back" / "scan.pdf"
    store.download(key, dest)
    assert sha256(dest.read_bytes()) == digest
    streamed = hashlib.sha256()
    with store.open(key) as f:
        while chunk := f.read(MiB):
            streamed.update(chunk)
    assert streamed.hexdigest() == digest


def test_default_put_file_of_multi_mb_file(s3_store: S3BlobStore, tmp_path: Path) -> None:
    src = write_file(tmp_path / "big.bin", 20 * MiB, seed=3)
    s3_store.put_file("exports/big.bin", src)
    assert s3_store.size("exports/big.bin") == 20 * MiB
    assert sha256(s3_store.get_bytes("exports/big.bin")) == sha256(src.read_bytes())


def test_content_type_follows_the_key(s3_store: S3BlobStore, tmp_path: Path) -> None:
    key = page_image_key("cd" * 32, 2, 150)
    s3_store.put_bytes(key, b"\x89PNG fake")
    src = tmp_path / "x.json"
    src.write_bytes(b"{}")
    s3_store.put_file("exports/x.json", src)
    client = raw_client(s3_store)
    png = client.head_object(Bucket=BUCKET, Key=s3_store.object_key(key))
    json = client.head_object(Bucket=BUCKET, Key=s3_store.object_key("exports/x.json"))
    assert png["ContentType"] == "image/png"
    assert json["ContentType"] == "application/json"


def test_open_store_s3_url(moto_endpoint: str, aws_env: None) -> None:
    store = open_store(
        f"s3://{BUCKET}/via-open-store/", s3_endpoint_url=moto_endpoint, s3_region=REGION
    )
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix, store.url) == (
        BUCKET,
        "via-open-store",
        f"s3://{BUCKET}/via-open-store",
    )
    store.put_bytes("k", b"v")
    assert store.get_bytes("k") == b"v"


def test_client_config(s3_store: S3BlobStore) -> None:
    config = s3_store.client.meta.config
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == 6  # 5 retries after the first try
    assert config.connect_timeout == 10
    assert config.read_timeout == 60
    # A custom endpoint (MinIO) gets path-style addressing.
    assert config.s3["addressing_style"] == "path"
    assert s3_store.client.meta.region_name == REGION


def test_client_is_made_again_after_fork(
    s3_store: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = s3_store.client
    assert s3_store.client is first
    monkeypatch.setattr("os.getpid", lambda: -1)
    assert s3_store.client is not first


def test_missing_bucket_is_an_error_not_a_missing_key(
    make_s3_store: Callable[..., S3BlobStore],
) -> None:
    store = make_s3_store()
    store.bucket = "no-such-bucket"
    with pytest.raises(ClientError) as info:
        store.put_bytes("k", b"x")
    assert not isinstance(info.value, BlobNotFound)
    with pytest.raises(ClientError):
        store.get_bytes("k")


def test_other_errors_are_not_hidden(s3_store: S3BlobStore) -> None:
    # A 403 on HEAD (no ListBucket right) must not read as "no such blob".
    client = boto3.session.Session().client(
        "s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    store = S3BlobStore(BUCKET, "p", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(ClientError):
            store.exists("k")
        with pytest.raises(ClientError):
            store.get_bytes("k")


@pytest.mark.parametrize("bucket", ["", "a/b"])
def test_bad_bucket_names(bucket: str) -> None:
    with pytest.raises(ValueError):
        S3BlobStore(bucket)


def test_outages_are_storage_unavailable(aws_env: None, tmp_path: Path) -> None:
    # After botocore's own retries, a dead server or 5xx/throttling must reach the
    # task layer as a ConnectionError (retried), not as a generic error (page failed).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead_client = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),  # the real config waits ~1 s per call
    )
    dead = S3BlobStore(BUCKET, "p", client=dead_client)
    source = write_file(tmp_path / "f", 4)
    for operation in (
        lambda: dead.put_bytes("k", b"x"),
        lambda: dead.put_file("k", source),
        lambda: dead.get_bytes("k"),
        lambda: dead.download("k", tmp_path / "out"),
        lambda: dead.exists("k"),
        lambda: dead.delete("k"),
    ):
        with pytest.raises(StorageUnavailable) as info:
            operation()
        assert isinstance(info.value, ConnectionError)

    client = boto3.session.Session().client(
        "s3", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubbed = S3BlobStore(BUCKET, "p", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("put_object", service_error_code="SlowDown", http_status_code=503)
        stub.add_client_error("get_object", service_error_code="Internal", http_status_code=500)
        with pytest.raises(StorageUnavailable):
            stubbed.put_bytes("k", b"x")
        with pytest.raises(StorageUnavailable):
            stubbed.get_bytes("k")
