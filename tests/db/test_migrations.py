"""Alembic owns the schema: it must build, tear down and match the models exactly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
    "stage_latency",
    "api_keys",
    "idempotency_keys",
    "outbox",
    "workers",
    "cluster_state",
    "webhook_deliveries",
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


def test_alembic_command_line_uses_the_settings_and_says_what_it_applied(
    tmp_path: Path,
) -> None:
    repo = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "DOCINTEL_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade  -> 0001" in done.stderr
    assert _tables(url) == EXPECTED_TABLES


def test_installed_package_finds_migrations_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Docker images `pip install .` (package in site-packages) and keep
    # alembic.ini + migrations/ in their WORKDIR; `docintel db upgrade` runs there.
    repo = Path(__file__).resolve().parents[2]
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(repo / "alembic.ini", app / "alembic.ini")
    shutil.copytree(repo / "migrations", app / "migrations")
    monkeypatch.setattr(migrate, "_ROOT", tmp_path / "site-packages")
    monkeypatch.chdir(app)
    url = f"sqlite:///{tmp_path / 'installed.db'}"
    migrate.upgrade(url)
    assert _tables(url) == EXPECTED_TABLES

    monkeypatch.chdir(tmp_path)  # neither beside the package nor here: a clear error
    with pytest.raises(FileNotFoundError, match=r"alembic\.ini and migrations/"):
        migrate.upgrade(url)


def test_sqlite_downgrade_of_one_step_keeps_the_data(tmp_path: Path) -> None:
    # A table rebuild on SQLite (batch mode) drops the old table, and with foreign
    # keys on that cascades into every text line: downgrades must alter in place.
    from sqlalchemy import func, select

    from docintel.db import get_engine, session_scope
    from docintel.models import Line, Page
    from tests.factories import make_document

    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    with session_scope(url) as session:
        page = Page(document_id=make_document(session).id, number=1)
        session.add(page)
        session.flush()
        session.add(
            Line(page_id=page.id, idx=0, text="kept", polygon=[0] * 8, confidence=1.0, engine="t")
        )
    get_engine(url).dispose()
    migrate.downgrade(url, "-1")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(Line.__table__)).scalar() == 1
    finally:
        engine.dispose()
    migrate.upgrade(url)
