"""Blobs as plain files under a root folder, written atomically."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from docintel.storage.base import (
    TEMP_PREFIX,
    BlobNotFound,
    BlobStore,
    StorageUnavailable,
    validate_key,
)

_COPY_BUFFER = 1024 * 1024

# mkstemp creates 0600 files; blobs should be as readable as any file the service
# writes, e.g. by a sidecar that serves page images from the same volume.
_BLOB_MODE = 0o644


# Writes refused by the volume, not by anything in the document: remounted read-only,
# full, permissions changed under us, a network share gone. Retried as an outage; as
# plain OSErrors they failed every page rendered meanwhile for good.
_OUTAGE_ERRNOS = frozenset(
    {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EIO, errno.ESTALE}
)


@contextlib.contextmanager
def _refused_write_is_outage(url: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        if error.errno in _OUTAGE_ERRNOS:
            raise StorageUnavailable(f"blob store {url} refused a write: {error}") from error
        raise


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(final: Path, fill: Callable[[BinaryIO], object], *, durable: bool) -> None:
    """Write ``final`` via a temp file in its folder and a rename.

    The temp file lives in the same folder so ``os.replace`` is a same-filesystem
    rename, which is atomic: readers see the old file, or no file, or the whole
    new one, never a partial one. Its name starts with ``TEMP_PREFIX``, which no
    key may use, so it can never be mistaken for a blob.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            if durable:
                # Data must reach the disk before the rename publishes it, or a
                # power cut could leave a complete-looking but empty file.
                os.fsync(f.fileno())
        os.chmod(tmp, _BLOB_MODE)
        os.replace(tmp, final)
    except BaseException:
        # BaseException: a KeyboardInterrupt or a worker's time limit must not
        # leave temp files behind either.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        _fsync_dir(final.parent)


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; a key's segments are its sub-folders."""

    def __init__(self, root: Path | str) -> None:
        # Not resolve(): a root that is a symlink (a mounted volume) stays as configured.
        self.root = Path(root).expanduser().absolute()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (it need not exist)."""
        return self.root.joinpath(*validate_key(key).split("/"))

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _stat_size(self, key: str) -> int | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        # A folder of other keys is not a blob.
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def _write_bytes(self, key: str, data: bytes) -> None:
        with _refused_write_is_outage(self.url):
            _atomic_write(self._path(key), lambda f: f.write(data), durable=True)

    def _write_file(self, key: str, path: Path) -> None:
        with open(path, "rb") as src, _refused_write_is_outage(self.url):
            _atomic_write(
                self._path(key),
                lambda f: shutil.copyfileobj(src, f, _COPY_BUFFER),
                durable=True,
            )

    def _open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(key, self.url) from None

    def _download(self, key: str, dest: Path) -> None:
        with self._open(key) as src:
            # Not durable: a download is a scratch copy that can be made again.
            _atomic_write(dest, lambda f: shutil.copyfileobj(src, f, _COPY_BUFFER), durable=False)

    def _delete(self, key: str) -> None:
        # Empty parent folders are left alone: removing them would race with a
        # concurrent put that has just created them for its temp file.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            self._path(key).unlink()
