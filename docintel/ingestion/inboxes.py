"""What a scan needs from a place files arrive in: list, copy, file away.

A folder files a taken file under ``processed/`` or ``failed/`` beside the
others (keeping its subfolder); an S3 prefix tags the object instead, since
moving objects in S3 is a copy plus a delete that other readers can observe
half done.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from docintel.settings import Settings

Outcome = Literal["processed", "failed"]
FILED_AWAY = ("processed", "failed")
TAG_KEY = "docintel"


class SourceUnavailable(RuntimeError):
    """The source cannot be listed now (a folder gone, a bucket refused); tried next scan."""


@dataclass(frozen=True, slots=True)
class Listed:
    """One version of one file: a new size or modification time is a new version."""

    path: str  # relative to the source, '/'-separated
    size: int
    mtime_ns: int
    etag: str | None = None  # S3: lets the copy insist on exactly this version

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class Inbox(Protocol):
    def list(self) -> Iterator[Listed]: ...

    def fetch(self, item: Listed, dest: Path) -> bool:
        """Copy ``item`` to ``dest``; False if it changed or vanished meanwhile."""
        ...

    def file_away(self, item: Listed, outcome: Outcome) -> None: ...


def source_kind(uri: str) -> Literal["folder", "s3"]:
    scheme = urlsplit(uri).scheme
    if scheme == "s3":
        return "s3"
    if scheme in ("", "file"):
        return "folder"
    raise ValueError(f"{uri!r}: a source is a folder path, file:///path or s3://bucket/prefix")


def open_inbox(uri: str, settings: Settings) -> Inbox:
    if source_kind(uri) == "s3":
        parts = urlsplit(uri)
        return S3Inbox(_s3_client(settings), parts.netloc, parts.path.lstrip("/"))
    return FolderInbox(folder_path(uri))


def folder_path(uri: str) -> Path:
    parts = urlsplit(uri)
    return Path(unquote(parts.path) if parts.scheme == "file" else uri).expanduser()


class FolderInbox:
    """A local (or mounted) folder and its subfolders; hidden files are still being written."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self) -> Iterator[Listed]:
        if not self.root.is_dir():
            raise SourceUnavailable(f"{self.root} is not a folder (gone, or not mounted)")
        errors: list[OSError] = []
        for folder, subfolders, files in os.walk(self.root, onerror=errors.append):
            here = Path(folder)
            if here == self.root:
                subfolders[:] = [d for d in subfolders if d not in FILED_AWAY]
            # Editors and copy tools write to dotfiles or '~' files and rename when done.
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                if name.startswith((".", "~")):
                    continue
                path = here / name
                try:
                    st = path.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted between listing and stat
                if not path.is_file() or path.is_symlink():
                    continue
                yield Listed(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime_ns)
        if errors and errors[0].filename == str(self.root):
            raise SourceUnavailable(f"cannot read {self.root}: {errors[0].strerror}")

    def fetch(self, item: Listed, dest: Path) -> bool:
        path = self.root / item.path
        try:
            if not self._unchanged(path, item):
                return False
            shutil.copyfile(path, dest)
            # A writer that kept going while we copied changed size or mtime.
            return self._unchanged(path, item)
        except FileNotFoundError:
            return False

    def file_away(self, item: Listed, outcome: Outcome) -> None:
        path = self.root / item.path
        try:
            if not self._unchanged(path, item):
                return  # replaced since: the new version is the next scan's to take
        except FileNotFoundError:
            return
        target = _free_name(self.root / outcome / item.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)

    @staticmethod
    def _unchanged(path: Path, item: Listed) -> bool:
        st = path.stat()
        return (st.st_size, st.st_mtime_ns) == (item.size, item.mtime_ns)


def _free_name(path: Path) -> Path:
    """``path``, or ``name (2).pdf`` and so on if a file of that name was filed before."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
    return candidate


class S3Inbox:
    """Objects under ``prefix`` in ``bucket``; taken ones are tagged ``docintel=<outcome>``."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def list(self) -> Iterator[Listed]:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    name = key.rsplit("/", 1)[-1]
                    if key.endswith("/") or name.startswith((".", "~")):
                        continue  # folder markers and files still being written
                    modified = obj["LastModified"]
                    yield Listed(
                        key[len(self.prefix) :],
                        obj["Size"],
                        int(modified.timestamp() * 1_000_000) * 1000,
                        obj.get("ETag"),
                    )
        except (BotoCoreError, ClientError) as error:
            where = f"s3://{self.bucket}/{self.prefix}"
            raise SourceUnavailable(f"cannot list {where}: {error}") from error

    def fetch(self, item: Listed, dest: Path) -> bool:
        from botocore.exceptions import ClientError

        key = self.prefix + item.path
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key, IfMatch=item.etag or "*")
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "NoSuchKey", "404", "412"):
                return False  # replaced or deleted since the listing
            raise
        with answer["Body"] as body, dest.open("wb") as out:
            shutil.copyfileobj(body, out, 1024 * 1024)
        return True

    def file_away(self, item: Listed, outcome: Outcome) -> None:
        from botocore.exceptions import ClientError

        key = self.prefix + item.path
        try:
            self.client.put_object_tagging(
                Bucket=self.bucket,
                Key=key,
                Tagging={"TagSet": [{"Key": TAG_KEY, "Value": outcome}]},
            )
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code", "")) not in ("NoSuchKey", "404"):
                raise


def _s3_client(settings: Settings) -> S3Client:
    import boto3

    from docintel.storage.s3 import default_client_config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        config=default_client_config(path_style=settings.s3_endpoint_url is not None),
    )
