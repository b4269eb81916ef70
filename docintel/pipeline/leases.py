"""Leases: a worker's fenced, renewed hold on the pages it works on.

Claiming pages gives them a fresh random ``claim_token`` and an expiry on the
database's clock (never a host's). While the work runs, a heartbeat thread
pushes the expiry forward; a holder that is killed, paused or cut off stops
renewing, and once its lease lapses any worker on any host may take the pages
over. Nothing asks whether a process is alive, so PID namespaces, containers
and hosts do not matter.

Every result is written with ``UPDATE ... WHERE claim_token = :mine AND status
= :expected`` (``write_held``), and lines and regions are replaced only when
that matched, in the same transaction. A holder whose lease was taken over
finds its write refused: stale results are dropped and logged, never written
over newer ones. Freeing or failing a page clears its token, so the fence
holds against those too, and a page never moves back from ``done``/``failed``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import CursorResult, Select, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from docintel.errors import error_detail
from docintel.models import Document, DocumentStatus, Page, PageStatus
from docintel.models.base import utcnow
from docintel.settings import Settings

log = logging.getLogger(__name__)

IN_FLIGHT = (PageStatus.PENDING, PageStatus.OCR, PageStatus.EXTRACT)


@dataclass(frozen=True, slots=True)
class Lease:
    """Pages held under one token, in the status they had when claimed."""

    token: str
    page_ids: tuple[int, ...]
    status: PageStatus


# Tokens of the leases this process's runs hold now. An embedded run that owns its
# database takes over every other lease at once; concurrent submits in one process
# (threads) must not take each other's.
_held_here: set[str] = set()
_held_here_lock = threading.Lock()


def hold_here(lease: Lease) -> None:
    with _held_here_lock:
        _held_here.add(lease.token)


def forget_held_here(leases: Sequence[Lease]) -> None:
    with _held_here_lock:
        _held_here.difference_update(lease.token for lease in leases)


def held_here() -> frozenset[str]:
    with _held_here_lock:
        return frozenset(_held_here)


def db_now(session: Session) -> datetime:
    """The database's clock: every host compares leases against the same time.

    SQLite is the embedded mode, one machine, so its clock is this process's.
    """
    if session.get_bind().dialect.name == "postgresql":
        now = session.scalar(select(func.statement_timestamp()))
        assert isinstance(now, datetime)
        return now
    return utcnow()


def process_name() -> str:
    """``host:pid``, for people reading the pages table; no decision is made by it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _live_documents() -> Select[Any]:
    return select(Document.id).where(Document.status == DocumentStatus.PROCESSING)


def _claimable(holder: str, now: datetime, max_attempts: int) -> Any:
    """Free pages; or, short of ``max_attempts``, pages whose lease lapsed or that an
    earlier run of this same task holds (a Celery retry, or a redelivery after its
    process died, keeps the task id: it need not wait for its own lease to lapse).

    A page that used up its attempts is left for the sweep to fail with ``timeout``:
    a page that kills every process that reads it must not be retaken forever.
    """
    return or_(
        Page.claim_token.is_(None),
        and_(
            or_(Page.lease_expires_at < now, Page.claim_task == holder),
            Page.attempts < max_attempts,
        ),
    )


def claim(
    session: Session,
    page_ids: Sequence[int],
    status: PageStatus,
    *,
    holder: str,
    lease_s: int,
    max_attempts: int,
    retrying: bool = False,
) -> Lease | None:
    """Take the pages of ``page_ids`` that are in ``status`` and claimable; commit.

    Only pages of documents still processing. ``None`` when none could be taken.
    Every claim counts as an attempt, except a Celery retry (``retrying``) taking
    back what its own task held: that is the same attempt after a transient error.
    A redelivery after the task's process died keeps the task id too, but is no
    retry: it counts, so a page that kills its workers runs out of attempts.
    """
    if not page_ids:
        return None
    now = db_now(session)
    token = str(uuid.uuid4())
    taken = session.scalars(
        update(Page)
        .where(
            Page.id.in_(page_ids),
            Page.status == status,
            Page.document_id.in_(_live_documents()),
            _claimable(holder, now, max_attempts),
        )
        .values(
            claim_token=token,
            lease_expires_at=now + timedelta(seconds=lease_s),
            claim_task=holder,
            claimed_at=now,
            claimed_by=process_name(),
            attempts=(
                case((Page.claim_task == holder, Page.attempts), else_=Page.attempts + 1)
                if retrying
                else Page.attempts + 1
            ),
            updated_at=now,
        )
        .returning(Page.id)
        .execution_options(synchronize_session=False)
    ).all()
    session.commit()
    return Lease(token, tuple(sorted(taken)), status) if taken else None


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """The pages a batch task of one queue may take: those waiting on ``queue``, and
    with ``unrouted`` also those that recorded none (an older version left them)."""

    queue: str
    unrouted: bool = False

    def clause(self) -> Any:
        mine = Page.queue == self.queue
        return or_(mine, Page.queue.is_(None)) if self.unrouted else mine


def claim_batch(
    session: Session,
    status: PageStatus,
    limit: int,
    *,
    on: QueueFilter,
    holder: str,
    lease_s: int,
    max_attempts: int,
    retrying: bool = False,
) -> Lease | None:
    """Up to ``limit`` pages waiting in ``status`` (OCR, extraction) on one queue, oldest
    first, from any live document.

    A page that already cost an attempt (its batch's process died, or hung) goes
    alone: if it is the one that kills workers, it must not take healthy
    batch-mates down with it every time until they all fail with ``timeout``.
    """
    now = db_now(session)
    candidates = session.execute(
        select(Page.id, Page.attempts)
        .where(
            Page.status == status,
            on.clause(),
            Page.document_id.in_(_live_documents()),
            _claimable(holder, now, max_attempts),
        )
        .order_by(Page.id)
        .limit(limit)
        # Lock page rows only, skipping those another claimer is taking right now.
        .with_for_update(skip_locked=True, of=Page)
    ).all()
    suspect = [row.id for row in candidates if row.attempts > 0]
    batch = suspect[:1] or [row.id for row in candidates]
    return claim(
        session,
        batch,
        status,
        holder=holder,
        lease_s=lease_s,
        max_attempts=max_attempts,
        retrying=retrying,
    )


def work_waiting(session: Session, status: PageStatus, on: QueueFilter) -> bool:
    """Whether any page of a live document waits, unclaimed, in ``status`` on a queue."""
    query = select(Page.id).where(
        Page.status == status,
        on.clause(),
        Page.claim_token.is_(None),
        Page.document_id.in_(_live_documents()),
    )
    return session.scalar(query.limit(1)) is not None


def write_held(session: Session, lease: Lease, page_id: int, values: dict[str, Any]) -> bool:
    """Write ``values`` to a page only while ``lease`` still holds it; release it.

    The caller replaces the page's lines or regions only when this returns True,
    in the same transaction, so a refused write leaves nothing behind.
    """
    result = session.execute(
        update(Page)
        .where(
            Page.id == page_id,
            Page.claim_token == lease.token,
            Page.status == lease.status,
            Page.document_id.in_(_live_documents()),
        )
        .values(**values, claim_token=None, lease_expires_at=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(result):
        return True
    log.warning(
        "dropped a stale result for page %s: its lease was taken over, or its document "
        "stopped processing, while this worker held it",
        page_id,
    )
    return False


@dataclass(frozen=True, slots=True)
class NotLoaded:
    """An engine this worker could not load (a driver, memory, a package); another
    worker may. ``why`` names the engine, this process and the error."""

    why: str

    @classmethod
    def because(cls, engine: str, error: BaseException) -> NotLoaded:
        return cls(f"{engine} did not load on {process_name()}: {error_detail(error)}")


def leave_to_lapse(session: Session, lease: Lease, notes: dict[int, str]) -> None:
    """Keep pages this worker cannot work on (their engine will not load here) until
    the lease lapses, noting why on each (``notes``: page id to note).

    Not given back at once: the oldest waiting page would come straight back to the
    same worker, ahead of every other page. Lapsed, it goes to whichever worker
    claims next, at the cost of an attempt; a page no worker can load an engine for
    fails with ``timeout`` after ``DOCINTEL_MAX_PAGE_ATTEMPTS``, with this note.
    """
    by_note: dict[str, list[int]] = {}
    for page_id, why in notes.items():
        by_note.setdefault(why, []).append(page_id)
    for why, page_ids in by_note.items():
        session.execute(
            update(Page)
            .where(Page.id.in_(page_ids), Page.claim_token == lease.token)
            .values(error_message=why[:1000])
            .execution_options(synchronize_session=False)
        )


def release(session: Session, lease: Lease) -> int:
    """Give the pages back untouched (a transient error): the retry, or anyone, may
    take them at once instead of waiting for the lease to lapse."""
    result = session.execute(
        update(Page)
        .where(Page.id.in_(lease.page_ids), Page.claim_token == lease.token)
        .values(claim_token=None, lease_expires_at=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def renew(session: Session, lease: Lease, lease_s: int) -> int:
    """Push the expiry forward; returns how many of the pages this lease still holds."""
    now = db_now(session)
    result = session.execute(
        update(Page)
        .where(Page.id.in_(lease.page_ids), Page.claim_token == lease.token)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


class LeaseKeeper:
    """Renews a lease every third of its length from a thread, while the work runs.

    Its own short transactions on its own connection: the worker's thread may
    be deep in rendering or OCR and holds no transaction meanwhile. A renewal
    that finds pages no longer held only logs it; the fenced write decides.
    """

    def __init__(self, settings: Settings, lease: Lease) -> None:
        self.settings = settings
        self.lease = lease
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"docintel-lease-{lease.token[:8]}", daemon=True
        )

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from docintel.db import session_scope

        interval = max(0.5, self.settings.lease_s / 3)
        while not self._stop.wait(interval):
            try:
                with session_scope(self.settings.database_url) as session:
                    held = renew(session, self.lease, self.settings.lease_s)
            except Exception:
                # The database may be back before the lease lapses; keep trying.
                log.warning("could not renew lease %s", self.lease.token, exc_info=True)
                continue
            if held < len(self.lease.page_ids) and not self.lost:
                self.lost = True
                log.warning(
                    "lease %s lost %d of its %d pages to another worker",
                    self.lease.token,
                    len(self.lease.page_ids) - held,
                    len(self.lease.page_ids),
                )
