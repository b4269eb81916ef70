"""The sweep: restart work that stopped moving, from what the database says.

Every worker runs it in turn (``docintel.queue.maintenance``); no process is
special. It re-sends:

- pages whose lease lapsed: their holder was killed, hung past its time limit,
  or paused. They are freed (the token changes, so the old holder's write is
  refused) and sent again; a page whose lease lapsed ``max_page_attempts``
  times fails with ``timeout``;
- everything waiting, when the broker lost its messages (``broker_lost``),
  and, as a slow safety net, waiting work untouched for ``stuck_after_s``;
- ``finalize`` for documents with no page left in flight.

A document therefore never stays ``processing`` forever, and Redis losing its
data loses no work.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from docintel.errors import DocumentError, ErrorCode
from docintel.models import (
    Document,
    DocumentStatus,
    Page,
    PageStatus,
    WorkerHeartbeat,
)
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.leases import IN_FLIGHT, db_now, held_here
from docintel.pipeline.page import extract_wake_up, ocr_wake_up
from docintel.pipeline.page_results import fail_candidates
from docintel.pipeline.priority import page_priority
from docintel.pipeline.routing import batch_size, default_queue
from docintel.settings import Settings

log = logging.getLogger(__name__)

_CHUNK = 10_000


def sweep(ctx: StageContext, *, broker_lost: bool = False) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    now = db_now(session)
    follow_ups = _take_back_lapsed(ctx, now)

    # A worker that stopped reporting in without signing off died: the messages it
    # had taken but not started stay invisible in the broker until its visibility
    # timeout (an hour). Their work is sent again now; a duplicate finds it claimed.
    gone = session.execute(
        delete(WorkerHeartbeat)
        .where(WorkerHeartbeat.heartbeat_at < now - timedelta(seconds=silent_after_s(settings)))
        .returning(WorkerHeartbeat.hostname, WorkerHeartbeat.pid)
    ).all()
    if gone:
        log.warning(
            "workers stopped reporting in (%s): re-sending the waiting work they may have held",
            ", ".join(f"{row.hostname}:{row.pid}" for row in gone),
        )

    # Waiting work whose message may be gone: all of it when the broker lost its
    # data or a worker died; otherwise only what sat untouched for the safety net.
    lost = broker_lost or bool(gone)
    cutoff = None if lost else now - timedelta(seconds=settings.stuck_after_s)
    follow_ups += _resend_waiting(ctx, _waiting_pages(session, cutoff), now)
    queued = select(Document).where(Document.status == DocumentStatus.QUEUED)
    if cutoff is not None:
        queued = queued.where(Document.updated_at <= cutoff)
    for doc in session.scalars(queued.with_for_update(skip_locked=True)):
        doc.updated_at = now
        follow_ups.append(FollowUp("docintel.split", (str(doc.id),)))

    in_flight = exists().where(Page.document_id == Document.id, Page.status.in_(IN_FLIGHT))
    for doc_id in session.scalars(
        select(Document.id).where(Document.status == DocumentStatus.PROCESSING, ~in_flight)
    ):
        follow_ups.append(FollowUp("docintel.finalize", (str(doc_id),)))

    return _deduplicated(follow_ups)


def silent_after_s(settings: Settings) -> float:
    """A worker silent this long is gone (it reports in every few seconds)."""
    return max(15.0, 3.0 * settings.sweep_interval_s)


def resume_document(ctx: StageContext, document_id: str, *, take_over: bool) -> list[FollowUp]:
    """Restart whatever of one document no live worker holds, without waiting for a sweep.

    ``docintel process`` calls it when it is given a file it already has. With
    ``take_over`` (an embedded run that knows no other process uses its
    database), pages still leased by a run that was killed are taken over at once.
    """
    session = ctx.session
    doc = session.get(Document, uuid.UUID(document_id))
    if doc is None:
        return []
    if doc.status == DocumentStatus.QUEUED:
        return [FollowUp("docintel.split", (document_id,))]
    if doc.status != DocumentStatus.PROCESSING:
        return []
    now = db_now(session)
    waiting = _waiting_pages(session, None, document_id=doc.id)  # before any is freed below
    follow_ups = _take_back_lapsed(ctx, now, document_id=doc.id, regardless=take_over)
    follow_ups += _resend_waiting(ctx, waiting, now)
    in_flight = session.scalar(
        select(Page.id).where(Page.document_id == doc.id, Page.status.in_(IN_FLIGHT)).limit(1)
    )
    if in_flight is None:
        follow_ups.append(FollowUp("docintel.finalize", (document_id,)))
    return _deduplicated(follow_ups)


def _take_back_lapsed(
    ctx: StageContext,
    now: datetime,
    *,
    document_id: uuid.UUID | None = None,
    regardless: bool = False,
) -> list[FollowUp]:
    """Free (or fail, past the attempts) pages whose lease lapsed, and send them again."""
    session, settings = ctx.session, ctx.settings
    query = (
        select(
            Page.id,
            Page.claim_token,
            Page.status,
            Page.attempts,
            Page.number,
            Page.queue,
            Page.document_id,
            Page.error_message,
        )
        .join(Document, Document.id == Page.document_id)
        .where(
            Document.status == DocumentStatus.PROCESSING,
            Page.status.in_(IN_FLIGHT),
            Page.claim_token.is_not(None),
        )
        .with_for_update(skip_locked=True, of=Page)
    )
    if not regardless:
        query = query.where(Page.lease_expires_at < now)
    elif mine := held_here():
        # Taking over regardless still spares the leases this process's runs hold.
        query = query.where(Page.claim_token.not_in(mine))
    if document_id is not None:
        query = query.where(Page.document_id == document_id)

    follow_ups: list[FollowUp] = []
    freed: list[_Waiting] = []
    for row in session.execute(query).all():
        # Fenced on the token we saw: if the holder's write won the row meanwhile
        # (SQLite has no row locks), this changes nothing.
        fenced = update(Page).where(
            Page.id == row.id, Page.claim_token == row.claim_token, Page.status == row.status
        )
        # Why the workers did not finish it, if one could say (an engine it could not load).
        last = f" (last: {row.error_message})" if row.error_message else ""
        if row.attempts >= settings.max_page_attempts and row.status == PageStatus.EXTRACT:
            # Its text stays: only the regions that kill or hang workers are given up.
            session.execute(
                fenced.values(
                    status=PageStatus.DONE,
                    claim_token=None,
                    lease_expires_at=None,
                    claimed_at=None,
                    updated_at=now,
                ).execution_options(synchronize_session=False)
            )
            fail_candidates(
                session,
                row.id,
                DocumentError(
                    ErrorCode.TIMEOUT,
                    f"no result after {row.attempts} attempts; the region may crash or hang "
                    f"workers{last}",
                ),
            )
            follow_ups.append(FollowUp("docintel.finalize", (str(row.document_id),)))
            continue
        if row.attempts >= settings.max_page_attempts:
            session.execute(
                fenced.values(
                    status=PageStatus.FAILED,
                    error_code=ErrorCode.TIMEOUT,
                    error_message=f"no result after {row.attempts} attempts, each of whose "
                    f"workers stopped renewing its lease; the page may crash or hang workers{last}",
                    claim_token=None,
                    lease_expires_at=None,
                    claimed_at=None,
                    updated_at=now,
                ).execution_options(synchronize_session=False)
            )
            follow_ups.append(FollowUp("docintel.finalize", (str(row.document_id),)))
            continue
        session.execute(
            fenced.values(
                claim_token=None, lease_expires_at=None, claimed_at=None, updated_at=now
            ).execution_options(synchronize_session=False)
        )
        freed.append(_Waiting(row.id, row.status, row.number, row.queue))
    return follow_ups + _messages_for(ctx, freed)


class _Waiting(NamedTuple):
    """A page to send a message for: its own (rendering) or its queue's wake-up."""

    id: int
    status: PageStatus
    number: int
    queue: str | None


def _waiting_pages(
    session: Session, cutoff: datetime | None, *, document_id: uuid.UUID | None = None
) -> list[_Waiting]:
    """Unclaimed pages of live documents in flight (and untouched since ``cutoff``)."""
    query = (
        select(Page.id, Page.status, Page.number, Page.queue)
        .join(Document, Document.id == Page.document_id)
        .where(
            Document.status == DocumentStatus.PROCESSING,
            Page.status.in_(IN_FLIGHT),
            Page.claim_token.is_(None),
        )
    )
    if cutoff is not None:
        query = query.where(Page.updated_at <= cutoff)
    if document_id is not None:
        query = query.where(Page.document_id == document_id)
    return [_Waiting(*row) for row in session.execute(query)]


def _resend_waiting(ctx: StageContext, pages: list[_Waiting], now: datetime) -> list[FollowUp]:
    ids = [page.id for page in pages]
    for start in range(0, len(ids), _CHUNK):  # a driver takes at most 65,535 parameters
        # Touched, so the safety net waits a full period before sending them again.
        ctx.session.execute(
            update(Page)
            .where(Page.id.in_(ids[start : start + _CHUNK]), Page.claim_token.is_(None))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return _messages_for(ctx, pages)


def _messages_for(ctx: StageContext, pages: Iterable[_Waiting]) -> list[FollowUp]:
    follow_ups: list[FollowUp] = []
    waiting: Counter[tuple[PageStatus, str]] = Counter()
    for page in pages:
        if page.status == PageStatus.PENDING:
            priority = page_priority(page.number)
            follow_ups.append(FollowUp("docintel.process_page", (page.id,), priority=priority))
        else:
            queue = page.queue or default_queue(ctx.settings, page.status)
            waiting[page.status, queue] += 1
    # An ocr_batch message is a wake-up that claims up to a batch of the pages waiting
    # on its queue: one per batch is enough, one per page would flood the GPU queue.
    for (status, queue), count in sorted(waiting.items()):
        wake_up = ocr_wake_up if status == PageStatus.OCR else extract_wake_up
        batches = -(-count // batch_size(ctx.settings, status, queue))
        follow_ups.extend(wake_up(queue) for _ in range(batches))
    return follow_ups


_WAKE_UPS = frozenset({"docintel.ocr_batch", "docintel.extract_batch"})


def _deduplicated(follow_ups: list[FollowUp]) -> list[FollowUp]:
    """One message per page or document task; wake-ups (one per batch) keep their count."""
    seen: set[tuple[str, tuple[object, ...]]] = set()
    unique: list[FollowUp] = []
    for follow_up in follow_ups:
        key = (follow_up.task, follow_up.args)
        if follow_up.task not in _WAKE_UPS and key in seen:
            continue
        seen.add(key)
        unique.append(follow_up)
    return unique
