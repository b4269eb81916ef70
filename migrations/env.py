"""Alembic environment: models' metadata, URL from docintel settings."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, text

from docintel.db import make_engine
from docintel.models import Base
from docintel.settings import get_settings

config = context.config
target_metadata = Base.metadata

# The alembic command line logs what it applies (alembic.ini's [loggers]); a
# program calling us (docintel.migrate, tests) keeps its own logging setup.
if config.config_file_name and not config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    # A caller (tests, `docintel db upgrade`) may pass the URL explicitly.
    explicit = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return explicit or get_settings().database_url


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Never queue behind a long transaction holding a lock while we hold ours.
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SET statement_timeout = '300s'"))
    else:
        # A table rebuild (SQLite's batch mode) drops the old table: with foreign keys
        # on, that would cascade into every row that refers to it. Off for the
        # migration only (before any BEGIN, where SQLite honours it); the engine is
        # disposed after, and the application's connections turn them on again.
        connection.execute(text("PRAGMA foreign_keys=OFF"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        # begin(): the SET statements above open the transaction, so commit it here.
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
