"""Blob storage for originals and page images: a local folder or an S3 bucket.

Open a store from the configured URL with ``open_store``. The S3 backend lives
in ``docintel.storage.s3`` and is imported only when an ``s3://`` URL is opened,
so processes on local storage never pay for importing boto3.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from docintel.storage.base import (
    ORIGINALS_PREFIX,
    PAGES_PREFIX,
    BlobNotFound,
    BlobStore,
    StorageUnavailable,
    is_content_addressed,
    original_key,
    page_image_key,
    validate_key,
)
from docintel.storage.local import LocalBlobStore

__all__ = [
    "ORIGINALS_PREFIX",
    "PAGES_PREFIX",
    "BlobNotFound",
    "BlobStore",
    "LocalBlobStore",
    "StorageUnavailable",
    "is_content_addressed",
    "open_store",
    "original_key",
    "page_image_key",
    "validate_key",
]

_EXPECTED = "expected file:///absolute/path or s3://bucket[/prefix]"


def open_store(
    url: str, *, s3_endpoint_url: str | None = None, s3_region: str | None = None
) -> BlobStore:
    """The blob store for ``url``; ``s3_*`` apply to ``s3://`` URLs only."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"storage URL {url!r} must not have a query or fragment; {_EXPECTED}")
    if parts.scheme == "file":
        # Path.as_uri() (how settings build the default) percent-encodes the path.
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError(f"storage URL {url!r} is not a local absolute path; {_EXPECTED}")
        return LocalBlobStore(Path(path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket; {_EXPECTED}")
        from docintel.storage.s3 import S3BlobStore

        return S3BlobStore(parts.netloc, parts.path, endpoint_url=s3_endpoint_url, region=s3_region)
    raise ValueError(f"unsupported storage URL {url!r}; {_EXPECTED}")
