"""Submit files and follow them to the end; used by the CLI (and by the API later).

In embedded mode the tasks run inside ``submit`` itself (eager queue); in the
distributed mode ``submit`` only enqueues, and ``wait`` watches the database.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kombu.exceptions import OperationalError as BrokerError
from kombu.utils.url import maybe_sanitize_url
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from docintel.db import session_scope
from docintel.models import TERMINAL_STATUSES, Document, DocumentStatus, Page, PageStatus
from docintel.passwords import seal_options
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.ingest import IngestResult, ingest_file
from docintel.pipeline.sweeper import resume_document
from docintel.queue import outbox
from docintel.queue.maintenance import sweep_turn
from docintel.settings import Settings


@dataclass(frozen=True, slots=True)
class Progress:
    document_id: uuid.UUID
    status: DocumentStatus
    pages_total: int
    pages_finished: int
    # Where its work is: queued, split, render, ocr, tables (several joined by ", "
    # while pages are in different stages), finishing, or its final status.
    stage: str

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class QueueUnavailable(RuntimeError):
    """The broker refused the message; the document is stored and its message kept."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A stored document and the messages that start its work, not yet sent."""

    result: IngestResult
    staged: outbox.Staged
    name: str


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
    A document submitted before and left unfinished (an interrupted run, a
    broker that was down, lost messages) is resumed.
    """
    accepted = accept(settings, path, options=options, source=source, reprocess=reprocess)
    start(settings, accepted)
    return accepted.result


def accept(
    settings: Settings,
    path: Path,
    *,
    filename: str | None = None,
    options: dict[str, Any] | None = None,
    source: str = "cli",
    reprocess: bool = False,
) -> Accepted:
    """Store ``path`` as a document (or find it) and stage its work; fast in every mode."""
    # Taken before any work: an embedded run that holds the lock has all its leases
    # on record, so whatever other lease it finds belongs to a run that is gone.
    sole_embedded_run = settings.embedded and owns_embedded_database(settings)
    options = seal_options(settings, options)  # a PDF password is never stored in clear
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        result = ingest_file(
            ctx, path, filename=filename, options=options, source=source, reprocess=reprocess
        )
        follow_ups = list(result.follow_ups)
        if not result.created and not result.restarted:
            follow_ups += resume_document(ctx, str(result.document_id), take_over=sole_embedded_run)
        # Committed with the document: if the send below fails, the sweep sends it.
        staged = outbox.stage(session, follow_ups)
    return Accepted(result, staged, filename or path.name)


def start(settings: Settings, accepted: Accepted) -> None:
    """Send the staged work; in embedded mode this runs it, here, to the end."""
    result = accepted.result
    try:
        outbox.deliver(settings, accepted.staged)  # after commit: workers must find the rows
    except (BrokerError, ConnectionError, OSError) as error:
        raise QueueUnavailable(
            f"cannot reach the broker at {maybe_sanitize_url(settings.broker_url)} ({error}); "
            f"{accepted.name} is stored as document {result.document_id} and starts once the "
            "broker is back (a worker sends it, or run this command again)"
        ) from error
    if settings.embedded:
        # Its work is done by now: settle the document once more. Concurrent submits of
        # one file in one process finish each other's pages, and a finalize that ran
        # while another thread's page was in flight must not leave it processing.
        from docintel.queue.base import dispatch

        dispatch([FollowUp("docintel.finalize", (str(result.document_id),))])


def owns_embedded_database(settings: Settings) -> bool:
    """Whether this process is the only embedded run using its SQLite database.

    An exclusive lock on a file beside the database, held for the life of the
    process: the kernel drops it when the process dies, however it dies. The
    process that holds it knows that any lease in the database belongs to a run
    that is gone, so it takes them over at once instead of waiting for them to lapse.
    """
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    lock_path = Path(f"{url.database}.lock").resolve()
    if lock_path in _embedded_locks:
        return True
    handle = lock_path.open("a+")  # held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _embedded_locks[lock_path] = handle
    return True


_embedded_locks: dict[Path, IO[str]] = {}


# Page statuses in pipeline order, with the stage a page in each is waiting for.
_STAGES = {PageStatus.PENDING: "render", PageStatus.OCR: "ocr", PageStatus.EXTRACT: "tables"}


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
        pages: dict[uuid.UUID, dict[PageStatus, int]] = {doc_id: {} for doc_id in docs}
        for doc_id, status, count in session.execute(
            select(Page.document_id, Page.status, func.count())
            .where(Page.document_id.in_(ids))
            .group_by(Page.document_id, Page.status)
        ):
            pages[doc_id][PageStatus(status)] = count
    return [
        Progress(
            doc_id,
            docs[doc_id].status,
            # Its pages once split (a page range selects some), else what is known.
            sum(pages[doc_id].values()) or docs[doc_id].page_count or 0,
            pages[doc_id].get(PageStatus.DONE, 0) + pages[doc_id].get(PageStatus.FAILED, 0),
            _stage(docs[doc_id].status, pages[doc_id]),
        )
        for doc_id in ids
        if doc_id in docs
    ]


def _stage(status: DocumentStatus, pages: dict[PageStatus, int]) -> str:
    if status != DocumentStatus.PROCESSING:
        return str(status)
    if not pages:
        return "split"
    waiting = [stage for page_status, stage in _STAGES.items() if pages.get(page_status)]
    return ", ".join(waiting) or "finishing"


def wait(
    settings: Settings,
    ids: Iterable[uuid.UUID],
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_progress: Callable[[list[Progress]], None] | None = None,
    on_database_error: Callable[[OperationalError], None] | None = None,
) -> list[Progress]:
    """Poll until every document in ``ids`` is final (or ``timeout_s`` passes).

    A database that goes away meanwhile (a restart, a failover, the network) is
    waited for: the work is safe in it and resumes with it. ``on_database_error``
    hears of each failed poll.
    """
    ids = list(ids)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    next_sweep = time.monotonic()
    state: list[Progress] = []
    while True:
        try:
            if settings.embedded and time.monotonic() >= next_sweep:
                # No worker sweeps here. Work another process left behind is taken
                # over once its lease lapses, and finished here by the eager queue.
                sweep_turn(force=True, settings=settings)
                next_sweep = time.monotonic() + settings.sweep_interval_s
            state = progress(settings, ids)
        except OperationalError as error:
            if on_database_error is not None:
                on_database_error(error)
            if deadline is not None and time.monotonic() > deadline:
                return state
            time.sleep(max(poll_s, 1.0))
            continue
        if on_progress is not None:
            on_progress(state)
        if all(p.terminal for p in state):
            return state
        if deadline is not None and time.monotonic() > deadline:
            return state
        time.sleep(poll_s)
