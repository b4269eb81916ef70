"""The one place that owns transactions, retries and enqueue-after-commit for tasks.

A task body is ``run_stage(stage_function, *ids)``: open a session, run the
stage, write its follow-ups to the outbox in the same transaction, commit,
and only then send them. Transient infrastructure errors give back the
leases the stage held and are retried with backoff and jitter (a retry keeps
its task id, so it may also take them back itself); anything else fails the
pages the stage held, through their fence, or is recorded on the document.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Task, current_task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, OperationalError

from docintel.db import session_scope
from docintel.errors import DocumentError, ErrorCode, error_detail
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.leases import Lease, forget_held_here, release
from docintel.pipeline.priority import TASK_PRIORITY
from docintel.queue import outbox
from docintel.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Worth retrying: the database, broker or blob store hiccuped, not the document.
# The blob stores raise StorageUnavailable, a ConnectionError, for their outages.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    BrokerError,  # sending the follow-ups failed; the outbox still holds them
    ConnectionError,
    TimeoutError,
)

# Celery retries of a task that met a database, broker or storage outage.
TRANSIENT_RETRIES = 8

Stage = Callable[..., list[FollowUp]]
FailureHook = Callable[[StageContext, BaseException, tuple[Any, ...]], list[FollowUp]]


class StageTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries: int | None = TRANSIENT_RETRIES


def run_stage(stage: Stage, *args: Any, on_failure: FailureHook | None = None) -> None:
    held: list[Lease] = []
    try:
        _run_stage(stage, args, on_failure, held)
    finally:
        forget_held_here(held)  # written, released or failed: no longer this process's


def _run_stage(
    stage: Stage, args: tuple[Any, ...], on_failure: FailureHook | None, held: list[Lease]
) -> None:
    settings = get_settings()
    holder, retries = _task_identity()
    try:
        with session_scope(settings.database_url) as session:
            ctx = StageContext(session, settings, holder, held, retrying=retries > 0)
            staged = outbox.stage(session, stage(ctx, *args))
    except TRANSIENT_ERRORS as error:
        if retries < TRANSIENT_RETRIES:
            _release(settings, held)
            raise
        # The last retry: an "outage" this long is this work's own problem (a page
        # too big for the store, a statement that always times out). Fail what the
        # run held rather than give it back to loop forever.
        staged = _record_failure(settings, stage, _gave_up(error, retries), args, held, on_failure)
    except DBAPIError as error:
        if error.connection_invalidated:
            _release(settings, held)
            raise
        staged = _record_failure(settings, stage, error, args, held, on_failure)
    except SoftTimeLimitExceeded as error:
        if not held:
            staged = _record_failure(settings, stage, error, args, held, on_failure)
        else:
            # As if the worker had died: the leases lapse, the sweep gives the pages
            # to a new run (an attempt each), and a page that keeps hanging fails with
            # ``timeout`` after DOCINTEL_MAX_PAGE_ATTEMPTS. Failing it here gave a
            # page that was slow once (a stalled engine, a loaded host) no retry.
            log.warning("stage %s ran past its time limit for %s", stage.__name__, args)
            return
    except Exception as error:
        staged = _record_failure(settings, stage, error, args, held, on_failure)
    outbox.deliver(settings, staged)


def _task_identity() -> tuple[str, int]:
    """The Celery task id (the same across retries and redeliveries of one message)
    and how many times it was retried; a fresh id outside a task."""
    request = getattr(current_task, "request", None)
    request_id = getattr(request, "id", None)
    if not request_id:
        return uuid.uuid4().hex, 0
    return str(request_id), int(getattr(request, "retries", 0) or 0)


def _gave_up(error: BaseException, retries: int) -> DocumentError:
    detail = error_detail(error)
    return DocumentError(
        ErrorCode.INTERNAL, f"still failing after {retries} retries with backoff ({detail})"
    )


def _release(settings: Settings, held: Sequence[Lease]) -> None:
    """Give back what a failed run held, so its retry (or anyone) can take it at once.

    Best effort: with the database away this fails too, and then the leases lapse.
    """
    if not held:
        return
    try:
        with session_scope(settings.database_url) as session:
            for lease in held:
                release(session, lease)
    except Exception:
        log.warning("could not release %d leases; they will lapse", len(held), exc_info=True)


def _record_failure(
    settings: Settings,
    stage: Stage,
    error: BaseException,
    args: tuple[Any, ...],
    held: Sequence[Lease],
    on_failure: FailureHook | None,
) -> outbox.Staged:
    log.exception("stage %s failed for %s", stage.__name__, args)
    with session_scope(settings.database_url) as session:
        ctx = StageContext(session, settings)
        follow_ups = _fail_held(ctx, held, as_document_error(error))
        if on_failure is not None:
            follow_ups += on_failure(ctx, error, args)
        return outbox.stage(session, follow_ups)


def _fail_held(ctx: StageContext, held: Sequence[Lease], error: DocumentError) -> list[FollowUp]:
    """Fail the pages this run still held (those it wrote are no longer held)."""
    from docintel.models import Page
    from docintel.pipeline.page_results import fail_held_page

    documents: set[str] = set()
    for lease in held:
        for page_id in lease.page_ids:
            if fail_held_page(ctx.session, lease, page_id, error):
                page = ctx.session.get(Page, page_id)
                if page is not None:
                    documents.add(str(page.document_id))
    return [FollowUp("docintel.finalize", (doc_id,)) for doc_id in sorted(documents)]


def as_document_error(error: BaseException) -> DocumentError:
    if isinstance(error, DocumentError):
        return error
    if isinstance(error, SoftTimeLimitExceeded):
        return DocumentError(ErrorCode.TIMEOUT, "the stage ran past its time limit")
    detail = error_detail(error)
    return DocumentError(ErrorCode.INTERNAL, f"unexpected error ({detail})")


def dispatch(follow_ups: Sequence[FollowUp]) -> None:
    from docintel.queue.tasks import app  # importing the tasks registers them

    if app.conf.task_always_eager:
        _run_embedded(app, follow_ups)
        return
    for follow_up in follow_ups:
        _send(app, follow_up)


def _send(app: Any, follow_up: FollowUp) -> None:
    options: dict[str, Any] = {"queue": follow_up.queue} if follow_up.queue else {}
    priority = follow_up.priority
    if priority is None:
        priority = TASK_PRIORITY.get(follow_up.task)
    if priority is not None:
        options["priority"] = priority
    app.tasks[follow_up.task].apply_async(args=follow_up.args, **options)


def _run_embedded(app: Any, follow_ups: Sequence[FollowUp]) -> None:
    """The in-process queue: pages on a few threads at once, the rest in order.

    A page spends most of its time where the GIL is let go (poppler's process,
    zlib, OpenCV, onnxruntime), so threads use the cores; each task has its own
    session and leases, exactly as on separate workers.
    """
    pages = [f for f in follow_ups if f.task == "docintel.process_page"]
    threads = min(len(pages), get_settings().embedded_threads or os.cpu_count() or 1)
    if threads > 1:
        with ThreadPoolExecutor(threads, thread_name_prefix="docintel-page") as pool:
            for done in [pool.submit(_send, app, f) for f in pages]:
                done.result()
        follow_ups = [f for f in follow_ups if f.task != "docintel.process_page"]
    for follow_up in follow_ups:
        _send(app, follow_up)
