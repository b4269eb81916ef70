"""Blobs in an S3 bucket under an optional prefix; any S3-compatible server (MinIO) works."""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.exceptions import RetriesExceededError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from docintel.storage.base import BlobNotFound, BlobStore, StorageUnavailable, validate_key

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client

_MiB = 1024 * 1024

# Codes S3 and compatible servers use for a missing object: HEAD has no body,
# so it only carries the status; GET names it.
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


# Answers that mean "the server is busy or broken right now", not "this request is wrong".
_OUTAGE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"}
)


def _is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES


def _is_outage(error: BaseException | None) -> bool:
    """True for a dead/slow network or a server-side failure, after botocore's own retries.

    boto3's transfer helpers wrap the real error (``S3UploadFailedError`` keeps it
    as the context, ``RetriesExceededError`` as ``last_exception``), so look inside.
    """
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, BotoConnectionError | HTTPClientError | IncompleteReadError):
            return True
        if isinstance(error, RetriesExceededError):
            return True  # download retries spent, all on network errors
        if isinstance(error, ClientError):
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(error.response.get("Error", {}).get("Code", ""))
            return status >= 500 or code in _OUTAGE_CODES
        error = error.__cause__ or error.__context__
        seen += 1
    return False


@contextmanager
def _outage_is_transient(url: str) -> Iterator[None]:
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as error:
        if _is_outage(error):
            raise StorageUnavailable(f"blob store {url} is unavailable: {error}") from error
        raise


def default_client_config(*, path_style: bool) -> Config:
    """Client settings: standard retries with backoff, bounded waits on a dead server."""
    return Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # MinIO and most self-hosted servers have no wildcard DNS for
        # bucket.host names, so virtual-hosted addressing would fail there.
        s3={"addressing_style": "path" if path_style else "auto"},
    )


def default_transfer_config() -> TransferConfig:
    # Parts of 16 MiB keep memory per upload bounded (chunk x concurrency) and
    # stay far below S3's 10,000-part limit for any upload we accept.
    return TransferConfig(
        multipart_threshold=16 * _MiB, multipart_chunksize=16 * _MiB, max_concurrency=4
    )


class _BodyReader(io.RawIOBase):
    """botocore's StreamingBody as a raw stream, so io.BufferedReader can wrap it.

    StreamingBody has read() but no readinto(), and is no real BinaryIO. Reads
    still go through it, so its check that the whole Content-Length arrived holds.
    """

    def __init__(self, body: Any, url: str) -> None:
        self._body = body
        self._url = url

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        with _outage_is_transient(self._url):  # the connection can drop mid-body
            data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        # The default readall loops over 8 KiB reads; one read is far cheaper.
        with _outage_is_transient(self._url):
            data: bytes = self._body.read()
        return data

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix>/<key>`` in ``bucket``.

    Credentials come from boto3's usual chain (environment, config files,
    instance roles). S3 makes every upload atomic: an object appears only when
    its PutObject or CompleteMultipartUpload succeeds.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: S3Client | None = None,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name: {bucket!r}")
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except ValueError as error:
                raise ValueError(f"invalid S3 prefix {prefix!r}: {error}") from None
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self.transfer_config = transfer_config or default_transfer_config()
        self._given_client = client
        self._own_client: S3Client | None = None
        self._own_client_pid = 0

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client, made on first use and again in a forked child.

        A client made before a fork (Celery prefork) would share pooled sockets
        with its parent, so each process makes its own. A fresh Session per
        client because boto3's default session is not thread-safe to set up.
        """
        if self._given_client is not None:
            return self._given_client
        pid = os.getpid()
        if self._own_client is None or self._own_client_pid != pid:
            session = boto3.session.Session()
            self._own_client = session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=self.region,
                config=default_client_config(path_style=self.endpoint_url is not None),
            )
            self._own_client_pid = pid
        return self._own_client

    def object_key(self, key: str) -> str:
        """The S3 object key that holds ``key``."""
        validate_key(key)
        return self._object_key(key)

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _content_type(key: str) -> str:
        # So page images can be served straight from the bucket (presigned URLs).
        return mimetypes.guess_type(key)[0] or "application/octet-stream"

    # Every hook runs inside _outage_is_transient: an unreachable or failing server
    # becomes StorageUnavailable (retried by the task layer), not a failed page.

    def _stat_size(self, key: str) -> int | None:
        with _outage_is_transient(self.url):
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as error:
                if _is_not_found(error):
                    return None
                raise
        return int(head["ContentLength"])

    def _write_bytes(self, key: str, data: bytes) -> None:
        with _outage_is_transient(self.url):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._object_key(key),
                Body=data,
                ContentType=self._content_type(key),
            )

    def _write_file(self, key: str, path: Path) -> None:
        # upload_file reads the file part by part (multipart above the
        # threshold) and aborts the multipart upload if any part fails.
        with _outage_is_transient(self.url):
            self.client.upload_file(
                str(path),
                self.bucket,
                self._object_key(key),
                ExtraArgs={"ContentType": self._content_type(key)},
                Config=self.transfer_config,
            )

    def _open(self, key: str) -> BinaryIO:
        with _outage_is_transient(self.url):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as error:
                if _is_not_found(error):
                    raise BlobNotFound(key, self.url) from None
                raise
        return io.BufferedReader(_BodyReader(response["Body"], self.url), buffer_size=_MiB)

    def _download(self, key: str, dest: Path) -> None:
        # download_file writes to a temp name beside dest and renames it at the
        # end, so dest never holds a partial object.
        with _outage_is_transient(self.url):
            try:
                self.client.download_file(
                    self.bucket, self._object_key(key), str(dest), Config=self.transfer_config
                )
            except ClientError as error:
                if _is_not_found(error):
                    raise BlobNotFound(key, self.url) from None
                raise

    def _delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too, which is the contract we want.
        with _outage_is_transient(self.url):
            self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
