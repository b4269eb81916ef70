"""Fixtures for the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from docintel import migrate


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind: the session's Postgres, or a fresh SQLite file."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        url: str = request.getfixturevalue("pg_url")
        return url
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate.upgrade(url)
    return url
