"""Fixtures for the blob stores, and the contract every backend must keep.

S3 tests run against a real S3-compatible HTTP server: moto in server mode on
loopback, started once per session. Each test gets its own key prefix in one
shared bucket, so tests never see each other's objects and no reset is needed.

``BlobStoreContract`` holds the tests shared by all backends; ``test_local.py``
and ``test_s3.py`` subclass it and supply a ``store`` fixture.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

from docintel.storage import (
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    original_key,
    page_image_key,
)
from docintel.storage.base import TEMP_PREFIX
from docintel.storage.s3 import S3BlobStore

BUCKET = "docintel-test"
REGION = "us-east-1"
DUMMY_KEY_ID = "testing"
DUMMY_SECRET = "testing"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of an S3-compatible server on 127.0.0.1 (port chosen by the OS)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_bucket(moto_endpoint: str) -> str:
    # Credentials are passed explicitly here: a session fixture cannot use the
    # function-scoped monkeypatch, and the environment stays untouched for
    # tests outside this package.
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
    )
    client.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through boto3's normal chain; nothing of the developer's ~/.aws."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    # Without this a missing credential would wait on the EC2 metadata service.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_s3_store(moto_endpoint: str, s3_bucket: str, aws_env: None) -> Callable[..., S3BlobStore]:
    """Make S3BlobStores on the test server; each gets a fresh prefix unless one is given."""

    def make(prefix: str | None = None, **kwargs: Any) -> S3BlobStore:
        kwargs.setdefault("endpoint_url", moto_endpoint)
        kwargs.setdefault("region", REGION)
        if prefix is None:
            prefix = f"test-{uuid.uuid4().hex}"
        return S3BlobStore(s3_bucket, prefix, **kwargs)

    return make


@pytest.fixture
def s3_store(make_s3_store: Callable[..., S3BlobStore]) -> S3BlobStore:
    return make_s3_store()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalBlobStore:
    # A root that does not exist yet: folders are made on demand.
    return LocalBlobStore(tmp_path / "blobs")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_file(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` pseudo-random bytes, written in chunks."""
    chunk = hashlib.sha256(str(seed).encode()).digest() * 32768  # 1 MiB
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            f.write(chunk[:remaining])
            remaining -= len(chunk)
    return path


BAD_KEYS = [
    "",
    "/abs/key",
    "../escape",
    "a/../../escape",
    "a/..",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "a\\b",
    "..\\escape",
    "a\x00b",
    "line\nbreak",
    f"a/{TEMP_PREFIX}x",
]

# Key segments: any printable text but '/' and '\'; the rules for '.', '..' and
# the temp prefix are kept by filtering.
_segment = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs", "Cc"), exclude_characters="/\\", max_codepoint=0x2FFFF
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.startswith(TEMP_PREFIX))
keys = st.lists(_segment, min_size=1, max_size=4).map("/".join)


class BlobStoreContract:
    """What every BlobStore must do. Subclasses provide a ``store`` fixture."""

    def test_round_trip_bytes(self, store: BlobStore) -> None:
        data = b"hello \x00 world\n" * 100
        assert store.put_bytes("docs/hello.bin", data) == "docs/hello.bin"
        assert store.exists("docs/hello.bin")
        assert store.size("docs/hello.bin") == len(data)
        assert store.get_bytes("docs/hello.bin") == data
        with store.open("docs/hello.bin") as f:
            assert f.read(5) == b"hello"
            assert f.read() == data[5:]

    def test_round_trip_file(self, store: BlobStore, tmp_path: Path) -> None:
        src = write_file(tmp_path / "src.bin", 300_000)
        key = original_key(sha256(src.read_bytes()))
        assert store.put_file(key, src) == key
        assert store.size(key) == 300_000
        dest = tmp_path / "out" / "deeper" / "copy.bin"
        store.download(key, dest)
        assert dest.read_bytes() == src.read_bytes()
        with store.open(key) as f, open(tmp_path / "streamed.bin", "wb") as out:
            shutil.copyfileobj(f, out, 64 * 1024)
        assert (tmp_path / "streamed.bin").read_bytes() == src.read_bytes()

    def test_empty_blob(self, store: BlobStore) -> None:
        store.put_bytes("empty", b"")
        assert store.exists("empty")
        assert store.size("empty") == 0
        assert store.get_bytes("empty") == b""

    def test_download_replaces_existing_file(self, store: BlobStore, tmp_path: Path) -> None:
        store.put_bytes("k", b"new")
        dest = tmp_path / "dest.bin"
        dest.write_bytes(b"old and longer")
        store.download("k", dest)
        assert dest.read_bytes() == b"new"

    def test_plain_key_is_overwritten(self, store: BlobStore) -> None:
        store.put_bytes("notes/a.txt", b"one")
        store.put_bytes("notes/a.txt", b"two")
        assert store.get_bytes("notes/a.txt") == b"two"

    def test_put_same_original_twice_is_idempotent(self, store: BlobStore, tmp_path: Path) -> None:
        data = b"%PDF-1.7 pretend" * 1000
        key = original_key(sha256(data))
        assert store.put_bytes(key, data) == key
        assert store.put_bytes(key, data) == key
        src = tmp_path / "same.pdf"
        src.write_bytes(data)
        assert store.put_file(key, src) == key
        assert store.get_bytes(key) == data

    def test_content_addressed_key_of_other_size_is_rewritten(self, store: BlobStore) -> None:
        # A page rendered again by a newer renderer may differ; a blob of another
        # size cannot be the same content, so it is replaced, not kept.
        key = page_image_key("ab" * 32, 1, 200)
        store.put_bytes(key, b"short")
        store.put_bytes(key, b"longer png")
        assert store.get_bytes(key) == b"longer png"

    def test_original_key_must_match_content(self, store: BlobStore, tmp_path: Path) -> None:
        key = original_key(sha256(b"the real bytes"))
        with pytest.raises(ValueError, match="does not match"):
            store.put_bytes(key, b"other bytes")
        src = tmp_path / "other.bin"
        src.write_bytes(b"other bytes")
        with pytest.raises(ValueError, match="does not match"):
            store.put_file(key, src)
        assert not store.exists(key)

    def test_missing_key(self, store: BlobStore, tmp_path: Path) -> None:
        assert not store.exists("nope/missing")
        with pytest.raises(BlobNotFound) as info:
            store.get_bytes("nope/missing")
        assert isinstance(info.value, KeyError)
        assert info.value.key == "nope/missing"
        assert "nope/missing" in str(info.value)
        with pytest.raises(BlobNotFound):
            store.open("nope/missing")
        with pytest.raises(BlobNotFound):
            store.size("nope/missing")
        dest = tmp_path / "never.bin"
        with pytest.raises(BlobNotFound):
            store.download("nope/missing", dest)
        assert not dest.exists()
        store.delete("nope/missing")  # not an error

    def test_put_file_of_missing_source_fails(self, store: BlobStore, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            store.put_file("k", tmp_path / "no-such-file")
        assert not store.exists("k")

    def test_delete(self, store: BlobStore) -> None:
        store.put_bytes("a/b", b"x")
        store.put_bytes("a/c", b"y")
        store.delete("a/b")
        assert not store.exists("a/b")
        assert store.get_bytes("a/c") == b"y"
        store.delete("a/b")

    def test_parent_of_keys_is_not_a_blob(self, store: BlobStore) -> None:
        store.put_bytes("dir/sub/leaf", b"x")
        assert not store.exists("dir/sub")
        with pytest.raises(BlobNotFound):
            store.get_bytes("dir/sub")
        with pytest.raises(BlobNotFound):
            store.size("dir")
        store.delete("dir/sub")
        assert store.get_bytes("dir/sub/leaf") == b"x"

    @pytest.mark.parametrize("bad", BAD_KEYS)
    def test_bad_keys_are_refused_everywhere(
        self, store: BlobStore, tmp_path: Path, bad: str
    ) -> None:
        src = tmp_path / "src"
        src.write_bytes(b"x")
        calls = [
            lambda: store.put_bytes(bad, b"x"),
            lambda: store.put_file(bad, src),
            lambda: store.get_bytes(bad),
            lambda: store.open(bad),
            lambda: store.download(bad, tmp_path / "dest"),
            lambda: store.exists(bad),
            lambda: store.size(bad),
            lambda: store.delete(bad),
        ]
        for call in calls:
            with pytest.raises(ValueError):
                call()

    def test_repr_names_the_url(self, store: BlobStore) -> None:
        assert store.url in repr(store)

    def test_round_trip_property(self, store: BlobStore) -> None:
        # The @given test is made per call: a @given method inherited by several
        # classes trips Hypothesis' differing-executors check. The store is shared
        # by all examples on purpose; each example writes under its own fresh
        # prefix, so there is no state to reset.
        @settings(max_examples=30, deadline=None)
        @given(key=keys, data=st.binary(max_size=2048))
        def round_trip(key: str, data: bytes) -> None:
            key = f"prop-{uuid.uuid4().hex}/{key}"
            assert store.put_bytes(key, data) == key
            assert store.exists(key)
            assert store.size(key) == len(data)
            assert store.get_bytes(key) == data
            store.delete(key)
            assert not store.exists(key)

        round_trip()
