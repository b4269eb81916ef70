"""A database of its own for each fault test: a sweep must find no other test's work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docintel import migrate
from tests import services


@pytest.fixture
def own_db() -> Iterator[str]:
    services.require("PostgreSQL", services.PG_ADMIN_URL, 5432)
    url = services.create_database(prefix="docintel_fault")
    try:
        migrate.upgrade(url)
        yield url
    finally:
        services.drop_database(url)
