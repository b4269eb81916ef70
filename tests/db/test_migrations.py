"""Alembic owns the schema: it must build, tear down and match the models exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from docintel import migrate
from docintel.db import make_engine
from docintel.models import Base
from tests import services

pytestmark = pytest.mark.postgres

EXPECTED_TABLES = {
    "documents",
    "pages",
    "text_lines",
    "extractions",
    "jobs",
    "sources",
    "source_files",
    "api_keys",
}


@pytest.fixture
def empty_pg() -> Iterator[str]:
    services.require("PostgreSQL", services.PG_ADMIN_URL, 5432)
    url = services.create_database(prefix="docintel_mig")
    yield url
    services.drop_database(url)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_postgres(empty_pg: str) -> None:
    migrate.upgrade(empty_pg)
    assert _tables(empty_pg) == EXPECTED_TABLES
    migrate.downgrade(empty_pg, "base")
    assert _tables(empty_pg) == set()
    migrate.upgrade(empty_pg)
    assert _tables(empty_pg) == EXPECTED_TABLES


def test_models_and_migrations_do_not_drift(pg_url: str) -> None:
    assert _diff(pg_url, Base.metadata) == []


def test_drift_check_notices_a_model_change(pg_url: str) -> None:
    # Guards the guard: a column added to the models without a migration shows up.
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    Table("documents", changed, Column("added_without_migration", Integer), extend_existing=True)
    diff = _diff(pg_url, changed)
    assert any("added_without_migration" in repr(entry) for entry in diff)


def test_same_migrations_run_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED_TABLES
    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED_TABLES
