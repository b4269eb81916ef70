"""Shared fixtures: real Postgres databases, migrated once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from docintel import migrate
from docintel.db import make_engine
from tests import services


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated throwaway Postgres database for this test session (per xdist worker)."""
    services.require("PostgreSQL", services.PG_ADMIN_URL, 5432)
    url = services.create_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        services.drop_database(url)


@pytest.fixture
def own_db() -> Iterator[str]:
    """A migrated Postgres database for this test alone: a sweep in it finds no other
    test's work (the session's database is shared by the tests of one xdist worker)."""
    services.require("PostgreSQL", services.PG_ADMIN_URL, 5432)
    url = services.create_database(prefix="docintel_own")
    try:
        migrate.upgrade(url)
        yield url
    finally:
        services.drop_database(url)


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_session(pg_engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    with pg_engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


@pytest.fixture
def redis_db_url() -> Iterator[str]:
    """A Redis database number of our own (1-15), flushed before and after the test."""
    with services.redis_database() as url:
        yield url
