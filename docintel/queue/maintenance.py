"""What every worker does beside its tasks: report in, and take its turn at the sweep.

No process is special. Each ``docintel worker`` runs a ``Maintenance`` thread
that refreshes its row in ``workers`` (so ``docintel process`` can tell that
nobody consumes a queue) and, every few seconds, offers to sweep. The
``cluster_state`` row, locked with SKIP LOCKED, lets one worker at a time
sweep, and its ``last_sweep_at`` (on the database's clock) spaces the sweeps
``sweep_interval_s`` apart however many workers there are. Kill any worker,
the one that swept last included, and the others carry on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from docintel.db import session_scope
from docintel.models import ClusterState, WorkerHeartbeat
from docintel.models.base import as_utc
from docintel.pipeline.context import StageContext
from docintel.pipeline.leases import db_now, process_name
from docintel.pipeline.sweeper import silent_after_s, sweep
from docintel.queue import broker_epoch, outbox
from docintel.settings import Settings, get_settings
from docintel.webhooks.events import due_deliveries

log = logging.getLogger(__name__)


def sweep_turn(
    *, force: bool, settings: Settings | None = None, messages_lost: bool = False
) -> int | None:
    """Sweep if it is this process's turn; the number of messages sent, None if skipped.

    ``force`` sweeps even if another process swept a moment ago (``docintel sweep``).
    ``messages_lost``: this process knows messages may be gone (its broker connection
    broke), so all waiting work is sent again, as for a broker that lost its data.
    """
    settings = settings or get_settings()
    with session_scope(settings.database_url) as session:
        last_sweep_at, seen_epoch = session.execute(
            select(ClusterState.last_sweep_at, ClusterState.broker_epoch).where(
                ClusterState.id == 1
            )
        ).one()
        if not force and not _interval_passed(last_sweep_at, db_now(session), settings):
            return None  # cheap: no lock, no broker round trip on every worker's every tick
    broker_lost = messages_lost or _broker_lost(settings, seen_epoch)
    new_epoch = None
    with session_scope(settings.database_url) as session:
        state = session.scalar(
            select(ClusterState).where(ClusterState.id == 1).with_for_update(skip_locked=True)
        )
        if state is None:
            return None  # another process is sweeping right now
        now = db_now(session)
        if not force and not _interval_passed(state.last_sweep_at, now, settings):
            return None  # another worker swept since we looked
        # Another sweep may have renewed the epoch since we looked: then it re-sent.
        broker_lost = broker_lost and state.broker_epoch == seen_epoch
        if broker_lost:
            new_epoch = str(uuid.uuid4())
            state.broker_epoch = new_epoch
            log.warning(
                "messages in flight were lost with a broken broker connection: "
                "re-sending all waiting work"
                if messages_lost
                else "the broker holds none of the messages sent so far (first sweep, or it "
                "restarted empty or was flushed): re-sending all waiting work"
            )
        follow_ups = sweep(StageContext(session, settings), broker_lost=broker_lost)
        follow_ups += outbox.take_unsent(session, now - timedelta(seconds=settings.lease_s))
        follow_ups += due_deliveries(session, now - _webhook_grace(settings))
        state.last_sweep_at = now
        state.swept_by = process_name()
        staged = outbox.stage(session, follow_ups)
    if new_epoch is not None:
        # Marked before the sends: the re-sends are safe in the outbox already, and a
        # long send must not make the next sweep believe the broker lost them again.
        broker_epoch.mark(settings.broker_url, new_epoch, seen_epoch)
    outbox.deliver(settings, staged)
    if follow_ups:
        log.info("sweep re-sent %d messages", len(follow_ups))
    return len(follow_ups)


def _webhook_grace(settings: Settings) -> timedelta:
    """How late a due webhook must be before the sweep sends it.

    Embedded mode has no broker to hold a retry's delayed message: the sweep is
    what retries, as soon as it is due. With a broker the retry's own message
    comes on time, and the sweep only stands in for a lost one.
    """
    return timedelta(0) if settings.embedded else timedelta(seconds=settings.lease_s)


def _interval_passed(last: datetime | None, now: datetime, settings: Settings) -> bool:
    if last is None:
        return True
    return now - as_utc(last) >= timedelta(seconds=settings.sweep_interval_s)


def _broker_lost(settings: Settings, epoch: str | None) -> bool:
    """Whether the broker lost the mark of ``epoch`` (and with it every queued message).

    Asked outside the sweep's transaction: with Redis away the sweep still frees
    lapsed leases (their messages wait in the outbox until Redis is back).
    """
    if not broker_epoch.checkable(settings.broker_url):
        return False
    try:
        return not broker_epoch.intact(settings.broker_url, epoch)
    except Exception:
        log.warning("cannot reach the broker to check its mark", exc_info=True)
        return False


class Maintenance:
    """The worker's heartbeat and sweep thread (started by ``docintel worker``)."""

    def __init__(self, queues: list[str], settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.queues = queues
        self.id = str(uuid.uuid4())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docintel-maintenance", daemon=True)

    @property
    def tick_s(self) -> float:
        return max(0.5, min(5.0, self.settings.sweep_interval_s / 2))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            with session_scope(self.settings.database_url) as session:
                session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == self.id))
        except Exception:
            log.warning("could not remove this worker's heartbeat row", exc_info=True)

    def _run(self) -> None:
        while True:
            for step in (self._report_in, self._offer_to_sweep):
                try:
                    step()
                except Exception:
                    # The database or broker is away: try again next tick, never die.
                    log.warning("maintenance step %s failed", step.__name__, exc_info=True)
            if self._stop.wait(self.tick_s):
                return

    def _report_in(self) -> None:
        with session_scope(self.settings.database_url) as session:
            now = db_now(session)
            row = session.get(WorkerHeartbeat, self.id)
            if row is None:
                session.add(
                    WorkerHeartbeat(
                        id=self.id,
                        hostname=socket.gethostname(),
                        pid=os.getpid(),
                        queues=",".join(self.queues),
                        started_at=now,
                        heartbeat_at=now,
                    )
                )
            else:
                row.heartbeat_at = now

    def _offer_to_sweep(self) -> None:
        sweep_turn(force=False, settings=self.settings)


def live_consumers(settings: Settings, queue: str) -> int:
    """Workers consuming ``queue`` that reported in within the last few ticks."""
    with session_scope(settings.database_url) as session:
        since = db_now(session) - timedelta(seconds=silent_after_s(settings))
        rows = session.scalars(
            select(WorkerHeartbeat.queues).where(WorkerHeartbeat.heartbeat_at >= since)
        ).all()
    return sum(queue in row.split(",") for row in rows)
