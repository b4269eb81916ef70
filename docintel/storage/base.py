"""The blob store interface, key rules and the content-addressed key layout.

Every backend speaks the same small interface so that the pipeline never knows
whether blobs live in a local folder or an S3 bucket. The public methods live
here and validate keys before delegating to the backend's ``_`` hooks, so no
backend can forget the traversal check.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

ORIGINALS_PREFIX = "originals"
PAGES_PREFIX = "pages"

# Temp files of the local store carry this prefix; keys may not use it, so a
# reader (or a sweeper deleting stale temps) can never confuse the two.
TEMP_PREFIX = ".tmp-"

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_ORIGINAL_KEY_RE = re.compile(r"originals/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")


class BlobNotFound(KeyError):
    """No blob is stored under the key (a "directory" of other keys is no blob either)."""

    def __init__(self, key: str, store_url: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.store_url = store_url

    def __str__(self) -> str:
        # KeyError's own __str__ gives the repr of the key alone; say what is missing.
        where = f" in {self.store_url}" if self.store_url else ""
        return f"no blob at key {self.key!r}{where}"


class StorageUnavailable(ConnectionError):
    """The store could not be reached or failed on its side (5xx, throttling).

    A ``ConnectionError``, so the task layer retries it with backoff like any
    other infrastructure outage instead of failing the page for good.
    """


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe relative '/'-separated path, else ValueError.

    The same rules hold for every backend so that a key that works on S3 also
    works on a local folder, where '..' or an absolute path would escape the root.
    """
    if not isinstance(key, str):
        raise ValueError(f"blob key must be a str, not {type(key).__name__}")
    if not key:
        raise ValueError("blob key must not be empty")
    if "\\" in key:
        raise ValueError(f"blob key must use '/' separators, not backslashes: {key!r}")
    if _CONTROL_RE.search(key):
        # NUL cannot be in a file name, and a newline in a key only ever comes
        # from a bug and would garble logs and S3 listings.
        raise ValueError(f"blob key must not contain control characters: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"blob key must be relative, not absolute: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"blob key has an empty, '.' or '..' segment: {key!r}")
        if part.startswith(TEMP_PREFIX):
            raise ValueError(f"blob key segments must not start with {TEMP_PREFIX!r}: {key!r}")
    return key


def _normalize_sha256(sha256: str) -> str:
    digest = sha256.lower()
    if not _SHA256_RE.fullmatch(digest):
        raise ValueError(f"not a hex SHA-256 digest: {sha256!r}")
    return digest


def _fanout(digest: str) -> str:
    # Two levels of 256 directories keep any one folder small on local disks.
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


def original_key(sha256: str) -> str:
    """Key of an uploaded original, addressed by the SHA-256 of its bytes."""
    return f"{ORIGINALS_PREFIX}/{_fanout(_normalize_sha256(sha256))}"


def page_image_key(sha256: str, page_number: int, dpi: int) -> str:
    """Key of the rendered image of one page (1-based) of the original ``sha256``."""
    if page_number < 1:
        raise ValueError(f"page_number is 1-based, got {page_number}")
    if dpi < 1:
        raise ValueError(f"dpi must be positive, got {dpi}")
    return f"{PAGES_PREFIX}/{_fanout(_normalize_sha256(sha256))}/p{page_number:05d}-{dpi}dpi.png"


def is_content_addressed(key: str) -> bool:
    """True for keys whose content is fixed by the key itself (originals and page renders)."""
    return key.startswith((f"{ORIGINALS_PREFIX}/", f"{PAGES_PREFIX}/"))


def _expected_sha256(key: str) -> str | None:
    match = _ORIGINAL_KEY_RE.fullmatch(key)
    if match is None:
        return None
    a, b, digest = match.groups()
    return digest if digest.startswith(a + b) else None


def _check_digest(key: str, expected: str, actual: str) -> None:
    # A wrong blob under an original key would silently poison deduplication
    # forever, because later puts of the right bytes are skipped as duplicates.
    if actual != expected:
        raise ValueError(f"content SHA-256 {actual} does not match key {key!r}")


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class BlobStore(ABC):
    """A flat namespace of immutable-ish blobs under '/'-separated keys.

    Writes are atomic: a reader sees either no blob or a complete one. Puts to
    content-addressed keys (see ``is_content_addressed``) are idempotent: if a
    blob of the same size is already there, nothing is written.
    """

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL this store was opened from (``file:///...`` or ``s3://bucket/prefix``)."""

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` and return the key."""
        validate_key(key)
        expected = _expected_sha256(key)
        if expected is not None:
            _check_digest(key, expected, hashlib.sha256(data).hexdigest())
        if is_content_addressed(key) and self._stat_size(key) == len(data):
            return key
        self._write_bytes(key, data)
        return key

    def put_file(self, key: str, path: Path) -> str:
        """Store the file at ``path`` under ``key``, streaming it, and return the key.

        Under an ``original_key`` the file is hashed first (one extra sequential
        read) and refused with ValueError if its SHA-256 is not the key's.
        """
        validate_key(key)
        path = Path(path)
        size = path.stat().st_size
        expected = _expected_sha256(key)
        if expected is not None:
            _check_digest(key, expected, _sha256_file(path))
        if is_content_addressed(key) and self._stat_size(key) == size:
            return key
        self._write_file(key, path)
        return key

    def get_bytes(self, key: str) -> bytes:
        """The whole blob in memory; use ``open`` or ``download`` for large blobs."""
        with self.open(key) as f:
            return f.read()

    def open(self, key: str) -> BinaryIO:
        """A readable binary file for the blob; close it (``with store.open(k) as f``)."""
        return self._open(validate_key(key))

    def download(self, key: str, dest: Path) -> None:
        """Copy the blob to ``dest`` (parents created); ``dest`` never holds a partial copy."""
        validate_key(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._download(key, dest)

    def exists(self, key: str) -> bool:
        return self._stat_size(validate_key(key)) is not None

    def size(self, key: str) -> int:
        """Size of the blob in bytes."""
        size = self._stat_size(validate_key(key))
        if size is None:
            raise BlobNotFound(key, self.url)
        return size

    def delete(self, key: str) -> None:
        """Remove the blob. Deleting a missing key is not an error, so cleanups can be retried."""
        self._delete(validate_key(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # Backend hooks: keys are already validated when these are called.

    @abstractmethod
    def _stat_size(self, key: str) -> int | None:
        """Size of the blob, or None when there is none."""

    @abstractmethod
    def _write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _write_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def _open(self, key: str) -> BinaryIO:
        """Raise BlobNotFound at once (not on first read) when the blob is missing."""

    @abstractmethod
    def _download(self, key: str, dest: Path) -> None: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...
