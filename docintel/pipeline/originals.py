"""A worker-local copy of each original, so a 2,000-page PDF is fetched once, not per page.

Page tasks of the same document usually land on the same few workers; the
cache keeps the most recent originals and evicts the oldest beyond a bound.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from docintel.errors import DocumentError, ErrorCode
from docintel.models import Document
from docintel.pipeline.context import StageContext
from docintel.storage.local import LocalBlobStore

_KEEP = 16
_lock = threading.Lock()


def local_original(ctx: StageContext, doc: Document) -> Path:
    if not doc.original_key:
        raise DocumentError(ErrorCode.INTERNAL, "the original of this document was never stored")
    store = ctx.store
    if isinstance(store, LocalBlobStore):
        return store.path_for(doc.original_key)  # already on this disk: no copy
    cache = ctx.settings.data_dir.resolve() / "cache" / "originals"
    target = cache / doc.sha256
    with _lock:
        if target.exists():
            os.utime(target)  # mark as recently used for eviction
            return target
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".tmp-{doc.sha256}-{os.getpid()}-{threading.get_ident()}"
        try:
            store.download(doc.original_key, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        _evict(cache)
    return target


def _evict(cache: Path) -> None:
    files = [p for p in cache.iterdir() if not p.name.startswith(".tmp-")]
    if len(files) <= _KEEP:
        return
    files.sort(key=lambda p: p.stat().st_mtime)
    for stale in files[: len(files) - _KEEP]:
        stale.unlink(missing_ok=True)
