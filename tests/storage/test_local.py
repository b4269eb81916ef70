"""The local folder store: the shared contract, atomic writes, layout, and open_store."""

from __future__ import annotations

import os
import shutil
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docintel.settings import Settings
from docintel.storage import (
    BlobNotFound,
    LocalBlobStore,
    is_content_addressed,
    open_store,
    original_key,
    page_image_key,
    validate_key,
)
from docintel.storage.base import TEMP_PREFIX
from tests.storage.conftest import BAD_KEYS, BlobStoreContract, sha256, write_file

SHA = "0123456789abcdef" * 4


class TestLocalContract(BlobStoreContract):
    @pytest.fixture
    def store(self, local_store: LocalBlobStore) -> LocalBlobStore:
        return local_store


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def temp_files(root: Path) -> list[Path]:
    return [p for p in all_files(root) if p.name.startswith(TEMP_PREFIX)]


# --- keys ---------------------------------------------------------------------------


def test_original_key_layout() -> None:
    assert original_key(SHA) == f"originals/01/23/{SHA}"
    # Digests are case-insensitive hex; keys are always the canonical lower case.
    assert original_key(SHA.upper()) == original_key(SHA)


def test_page_image_key_layout() -> None:
    assert page_image_key(SHA, 1, 200) == f"pages/01/23/{SHA}/p00001-200dpi.png"
    assert page_image_key(SHA, 123456, 72) == f"pages/01/23/{SHA}/p123456-72dpi.png"


@pytest.mark.parametrize("bad", ["", "abc", SHA[:-1], SHA + "0", "g" * 64, f"../{SHA[3:]}"])
def test_key_helpers_refuse_bad_digests(bad: str) -> None:
    with pytest.raises(ValueError):
        original_key(bad)
    with pytest.raises(ValueError):
        page_image_key(bad, 1, 200)


@pytest.mark.parametrize(("page", "dpi"), [(0, 200), (-1, 200), (1, 0)])
def test_page_image_key_refuses_bad_numbers(page: int, dpi: int) -> None:
    with pytest.raises(ValueError):
        page_image_key(SHA, page, dpi)


def test_is_content_addressed() -> None:
    assert is_content_addressed(original_key(SHA))
    assert is_content_addressed(page_image_key(SHA, 3, 300))
    assert not is_content_addressed("exports/report.json")
    assert not is_content_addressed("originalsX/a")


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_validate_key_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_key(bad)


@given(st.text(alphabet="ab./\\\x00", max_size=12))
def test_valid_keys_never_leave_the_root(key: str) -> None:
    root = Path("/srv/blobs")
    try:
        validate_key(key)
    except ValueError:
        return
    path = LocalBlobStore(root).path_for(key)
    assert os.path.normpath(path) == str(path)  # nothing for '..' or '.' to collapse
    assert path.is_relative_to(root) and path != root


def test_blob_not_found_message() -> None:
    error = BlobNotFound("a/b", "file:///x")
    assert str(error) == "no blob at key 'a/b' in file:///x"
    assert isinstance(error, KeyError | LookupError)


# --- layout on disk -----------------------------------------------------------------


def test_blobs_are_plain_files_under_the_root(local_store: LocalBlobStore) -> None:
    data = b"pdf bytes"
    key = local_store.put_bytes(original_key(sha256(data)), data)
    path = local_store.root / "originals" / key.split("/")[1] / key.split("/")[2] / sha256(data)
    assert local_store.path_for(key) == path
    assert path.read_bytes() == data
    assert all_files(local_store.root) == [path]
    # Readable by others, unlike the 0600 that mkstemp gives the temp file.
    assert path.stat().st_mode & 0o777 == 0o644


def test_url_is_the_file_uri_of_the_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "with space")
    assert store.url == (tmp_path / "with space").as_uri()
    assert store.url.startswith("file:///")


# --- idempotency --------------------------------------------------------------------


def test_second_put_of_same_bytes_does_not_rewrite(
    local_store: LocalBlobStore, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    key = local_store.put_bytes(original_key(sha256(data)), data)
    path = local_store.path_for(key)
    before = path.stat()

    assert local_store.put_bytes(key, data) == key
    src = tmp_path / "again.bin"
    src.write_bytes(data)
    assert local_store.put_file(key, src) == key

    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_put_to_plain_key_does_rewrite(local_store: LocalBlobStore) -> None:
    # The contrast to the test above: the inode check really detects a rewrite.
    local_store.put_bytes("plain", b"same")
    before = local_store.path_for("plain").stat()
    local_store.put_bytes("plain", b"same")
    assert local_store.path_for("plain").stat().st_ino != before.st_ino


# --- atomicity ----------------------------------------------------------------------


def _fail(*args: Any, **kwargs: Any) -> None:
    raise OSError("simulated crash")


def _partial_copy(src: Any, dst: Any, length: int = 0) -> None:
    dst.write(src.read(1000))
    dst.flush()
    raise OSError("simulated crash mid-copy")


@pytest.mark.parametrize(
    ("target", "replacement"),
    [
        ("os.replace", _fail),  # all data written and synced, rename fails
        ("os.fsync", _fail),  # data written, never synced
        ("shutil.copyfileobj", _partial_copy),  # half the data written
    ],
)
@pytest.mark.parametrize("old", [None, b"previous content"])
def test_crash_mid_write_leaves_no_partial_blob(
    local_store: LocalBlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    replacement: Any,
    old: bytes | None,
) -> None:
    key = "docs/report.bin"
    if old is not None:
        local_store.put_bytes(key, old)
    src = write_file(tmp_path / "src.bin", 200_000)

    module, name = target.split(".")
    monkeypatch.setattr({"os": os, "shutil": shutil}[module], name, replacement)
    with pytest.raises(OSError, match="simulated crash"):
        local_store.put_file(key, src)
    if target != "shutil.copyfileobj":  # put_bytes copies nothing
        with pytest.raises(OSError, match="simulated crash"):
            local_store.put_bytes(key, src.read_bytes())
    monkeypatch.undo()

    assert temp_files(local_store.root) == []
    if old is None:
        assert not local_store.exists(key)
        assert not local_store.path_for(key).exists()
    else:
        assert local_store.get_bytes(key) == old


def test_interrupt_mid_write_leaves_no_temp_file(
    local_store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed by a time limit raises a BaseException, not an Exception.
    def interrupt(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        local_store.put_bytes("k", b"data")
    monkeypatch.undo()
    assert temp_files(local_store.root) == []
    assert not local_store.exists("k")


def test_data_is_synced_before_it_is_published(
    local_store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    local_store.put_bytes("k", b"data")
    # File data, then the rename, then the folder entry.
    assert events == ["fsync", "replace", "fsync"]


def test_concurrent_reader_never_sees_partial_content(local_store: LocalBlobStore) -> None:
    key = "hot/blob"
    versions = [bytes([i]) * (200_000 + i * 10_000) for i in range(4)]
    local_store.put_bytes(key, versions[0])
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            i = 0
            while not stop.is_set():
                local_store.put_bytes(key, versions[i % len(versions)])
                i += 1
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen = set()
        reads = 0
        deadline = time.monotonic() + 20  # fsyncs are slow on a loaded machine
        while reads < 300 or (len(seen) < 2 and time.monotonic() < deadline):
            data = local_store.get_bytes(key)
            assert data in versions
            seen.add(len(data))
            reads += 1
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert len(seen) > 1, "the writer never got to replace the blob"


def test_put_file_streams(local_store: LocalBlobStore, tmp_path: Path) -> None:
    size = 32 * 1024 * 1024
    src = write_file(tmp_path / "big.bin", size)
    tracemalloc.start()
    try:
        local_store.put_file("big/file", src)
        local_store.download("big/file", tmp_path / "copy.bin")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 8, f"peak {peak} bytes: the file was read into memory"
    assert local_store.size("big/file") == size
    assert sha256((tmp_path / "copy.bin").read_bytes()) == sha256(src.read_bytes())


def test_download_failure_keeps_the_old_dest(
    local_store: LocalBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.put_bytes("k", b"new content")
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"old")
    monkeypatch.setattr(shutil, "copyfileobj", _partial_copy)
    with pytest.raises(OSError):
        local_store.download("k", dest)
    monkeypatch.undo()
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)] == []


# --- open_store ---------------------------------------------------------------------


def test_open_store_file_url(tmp_path: Path) -> None:
    store = open_store((tmp_path / "blobs").as_uri())
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "blobs"
    store.put_bytes("a/b", b"x")
    assert (tmp_path / "blobs" / "a" / "b").read_bytes() == b"x"


def test_open_store_decodes_percent_escapes(tmp_path: Path) -> None:
    root = tmp_path / "my blobs #1"
    store = open_store(root.as_uri())
    assert isinstance(store, LocalBlobStore)
    assert store.root == root
    assert store.url == root.as_uri()


def test_open_store_localhost_file_url(tmp_path: Path) -> None:
    store = open_store(f"file://localhost{tmp_path}")
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path


def test_open_store_default_settings_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "state", storage_url="")
    store = open_store(
        settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "state" / "blobs").resolve()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/abs/path",
        "relative/path",
        "file:relative/path",
        "file://otherhost/srv/blobs",
        "file:///srv/blobs?x=1",
        "http://example.com/blobs",
        "gs://bucket/prefix",
        "s3:///no-bucket",
        "s3://bucket/../escape",
        "s3://bucket/a//b",
    ],
)
def test_open_store_refuses(url: str) -> None:
    with pytest.raises(ValueError, match=r"storage URL|S3 prefix"):
        open_store(url)
