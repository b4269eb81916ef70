"""What a scan needs from a place files arrive in: list, copy, file away.

A folder files a taken file under ``processed/`` or ``failed/`` beside the
others (keeping its subfolder); an S3 prefix tags the object instead, since
moving objects in S3 is a copy plus a delete that other readers can observe
half done.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from docintel.settings import Settings

Outcome = Literal["processed", "failed"]
FILED_AWAY = ("processed", "failed")
TAG_KEY = "docintel"
MAX_PATH = 2048  # source_files.path


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


@dataclass(slots=True)
class Listing:
    """What one listing found, and what it could not look into."""

    files: list[Listed] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # folders, relative, '/'-separated
    problems: list[str] = field(default_factory=list)  # for the log

    def covers_unreadable(self, path: str) -> bool:
        """Whether ``path`` lies in a folder this listing could not read (so its
        absence says nothing)."""
        return any(path.startswith(f"{folder}/") for folder in self.unreadable)


class Inbox(Protocol):
    def list(self) -> Listing: ...

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

    def list(self) -> Listing:
        if not self.root.is_dir():
            raise SourceUnavailable(f"{self.root} is not a folder (gone, or not mounted)")
        listing = Listing()
        errors: list[OSError] = []
        for folder, subfolders, files in os.walk(self.root, onerror=errors.append):
            here = Path(folder)
            if here == self.root:
                subfolders[:] = [d for d in subfolders if d not in FILED_AWAY]
            # Editors and copy tools write to dotfiles or '~' files and rename when done.
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith((".", "~")):
                    self._note(here / name, listing)
        for error in errors:
            if error.filename == str(self.root):
                raise SourceUnavailable(f"cannot read {self.root}: {error.strerror}")
            where = Path(error.filename).relative_to(self.root).as_posix()
            listing.unreadable.append(where)
            listing.problems.append(f"cannot read the folder {where}: {error.strerror}")
        return listing

    def _note(self, path: Path, listing: Listing) -> None:
        relative = path.relative_to(self.root).as_posix()
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            # Bytes that are no UTF-8 (an old share, a zip's names) cannot be stored.
            listing.problems.append(f"skipped a file whose name is not UTF-8: {relative!r}")
            return
        if len(relative) > MAX_PATH:
            listing.problems.append(f"skipped a path longer than {MAX_PATH}: {relative[:80]}...")
            return
        try:
            st = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # deleted between listing and stat
        if stat.S_ISREG(st.st_mode):  # not links, devices, pipes
            listing.files.append(Listed(relative, st.st_size, st.st_mtime_ns))

    def fetch(self, item: Listed, dest: Path) -> bool:
        # Opened without following a link, and checked on the open file: a file
        # swapped for a link to a secret between listing and copy is not taken.
        try:
            fd = os.open(self.root / item.path, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, OSError):
            return False  # deleted, or now a link
        with os.fdopen(fd, "rb") as source:
            if not self._matches(os.fstat(fd), item):
                return False
            with dest.open("wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
            # A writer that kept going while we copied changed size or mtime.
            return self._matches(os.fstat(fd), item)

    def file_away(self, item: Listed, outcome: Outcome) -> None:
        path = self.root / item.path
        try:
            if not self._matches(path.stat(follow_symlinks=False), item):
                return  # replaced since: the new version is the next scan's to take
        except FileNotFoundError:
            return
        target = _free_name(self.root / outcome / item.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A processed/ (or a folder in it) that is a link must not carry files out.
        if not target.parent.resolve().is_relative_to(self.root.resolve()):
            raise OSError(f"{target.parent} leads out of the inbox; {item.path} stays")
        os.replace(path, target)

    @staticmethod
    def _matches(st: os.stat_result, item: Listed) -> bool:
        return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (
            item.size,
            item.mtime_ns,
        )


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

    def list(self) -> Listing:
        from botocore.exceptions import BotoCoreError, ClientError

        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        listing = Listing()
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    name = key.rsplit("/", 1)[-1]
                    if key.endswith("/") or name.startswith((".", "~")):
                        continue  # folder markers and files still being written
                    if len(key) - len(self.prefix) > MAX_PATH:
                        listing.problems.append(f"skipped a key longer than {MAX_PATH}")
                        continue
                    modified = obj["LastModified"]
                    listing.files.append(
                        Listed(
                            key[len(self.prefix) :],
                            obj["Size"],
                            int(modified.timestamp() * 1_000_000) * 1000,
                            obj.get("ETag"),
                        )
                    )
        except (BotoCoreError, ClientError) as error:
            where = f"s3://{self.bucket}/{self.prefix}"
            raise SourceUnavailable(f"cannot list {where}: {error}") from error
        return listing

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
