"""Submit files and follow them to the end; used by the CLI (and by the API later).

In embedded mode the tasks run inside ``submit`` itself (eager queue); in the
distributed mode ``submit`` only enqueues, and ``wait`` watches the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import TERMINAL_STATUSES, Document, DocumentStatus, Page, PageStatus
from docintel.pipeline.context import StageContext
from docintel.pipeline.ingest import IngestResult, ingest_file
from docintel.pipeline.sweeper import resume_document, sweep
from docintel.queue.base import dispatch, run_stage
from docintel.settings import Settings


@dataclass(frozen=True, slots=True)
class Progress:
    document_id: uuid.UUID
    status: DocumentStatus
    pages_total: int
    pages_finished: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def submit(
    settings: Settings,
    path: Path,
    *,
    options: dict[str, Any] | None = None,
    source: str = "cli",
    reprocess: bool = False,
) -> IngestResult:
    """Ingest ``path`` and queue its work (run it, in embedded mode).

    ``reprocess``: if these bytes were processed before, run them again with
    ``options`` instead of reusing the earlier results (see ``ingest_file``).
    """
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        result = ingest_file(ctx, path, options=options, source=source, reprocess=reprocess)
        follow_ups = list(result.follow_ups)
        if settings.embedded and not result.created and not result.restarted:
            # Embedded mode has no workers and no sweeper: a run that was
            # interrupted (Ctrl-C, a kill) left this document unfinished, and only
            # submitting it again can pick it up where it stopped.
            follow_ups += resume_document(ctx, str(result.document_id))
    dispatch(follow_ups)  # after commit: workers must find the rows they are sent for
    return result


def progress(settings: Settings, ids: Iterable[uuid.UUID]) -> list[Progress]:
    ids = list(ids)
    with session_scope(settings.database_url) as session:
        docs = {
            row.id: row
            for row in session.execute(
                select(Document.id, Document.status, Document.page_count).where(
                    Document.id.in_(ids)
                )
            )
        }
        finished = dict(
            session.execute(
                select(Page.document_id, func.count())
                .where(
                    Page.document_id.in_(ids),
                    Page.status.in_((PageStatus.DONE, PageStatus.FAILED)),
                )
                .group_by(Page.document_id)
            ).all()
        )
    return [
        Progress(doc_id, docs[doc_id].status, docs[doc_id].page_count or 0, finished.get(doc_id, 0))
        for doc_id in ids
        if doc_id in docs
    ]


def wait(
    settings: Settings,
    ids: Iterable[uuid.UUID],
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_progress: Callable[[list[Progress]], None] | None = None,
) -> list[Progress]:
    ids = list(ids)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    next_sweep = time.monotonic()
    while True:
        if settings.embedded and time.monotonic() >= next_sweep:
            # No worker runs the sweeper here. Work another process left behind is
            # taken over (at once if that process is gone from this host, else once
            # stale) and finished in this process by the eager queue.
            run_stage(sweep)
            next_sweep = time.monotonic() + settings.sweep_interval_s
        state = progress(settings, ids)
        if on_progress is not None:
            on_progress(state)
        if all(p.terminal for p in state):
            return state
        if deadline is not None and time.monotonic() > deadline:
            return state
        time.sleep(poll_s)
