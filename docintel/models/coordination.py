"""What keeps the queue honest without a singleton: the outbox, live workers, sweep state.

The database is the queue and broker messages are only wake-ups. Follow-up
messages are written here in the transaction that makes them necessary and
deleted once sent, so a crash between the commit and the send loses nothing.
Every worker reports in, so a client can tell that nobody consumes a queue,
and every worker takes its turn at the sweep, one at a time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from docintel.models.base import Base, BigId, JSONType, utcnow


class OutboxMessage(Base):
    """A task message committed with the work that asked for it, until it is sent."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task: Mapped[str] = mapped_column(String(64))
    args: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    queue: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[int | None] = mapped_column(Integer)
    # The database's clock, like the sweep's cutoff: a host whose clock is off must not
    # make fresh rows look abandoned (or abandoned ones fresh).
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class WorkerHeartbeat(Base):
    """One live worker process (``docintel worker``), refreshed every few seconds."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(128))  # comma-separated
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ClusterState(Base):
    """One row: when the last sweep ran, and the broker generation its messages live in.

    Its row lock makes sweeps take turns; ``broker_epoch`` is also written into the
    broker, and a broker that comes back without it has lost every queued message.
    """

    __tablename__ = "cluster_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_sweep_at: Mapped[datetime | None]
    swept_by: Mapped[str | None] = mapped_column(String(128))
    broker_epoch: Mapped[str | None] = mapped_column(String(36))
