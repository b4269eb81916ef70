"""Engine and session factory: one metadata, one unbound sessionmaker per process.

Every task opens its own short session (``session_scope``); nothing shares a
session across tasks, so one failed transaction never poisons the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from docintel.settings import get_settings


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; cascades depend on them. WAL lets
    # the progress display read while the pipeline writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().database_url
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any exception."""
    session = get_sessionmaker(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engines(*, close: bool = True) -> None:
    """Drop pooled connections: after a fork (``close=False``: they are the parent's),
    or when settings point elsewhere."""
    while _engines:
        _engines.popitem()[1].dispose(close=close)


def lock_row(session: Session, model: Any, row_id: Any) -> None:
    """Make this transaction the only one working on ``model`` row ``row_id``.

    PostgreSQL locks the row (callers then read it ``FOR UPDATE``). SQLite has no
    row locks and takes no lock for a read: a no-op write, as the transaction's
    first statement, takes its database write lock, so a second transaction doing
    the same waits, and then reads what the first committed.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(model).where(model.id == row_id).values(id=model.id))
