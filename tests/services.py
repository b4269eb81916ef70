"""Real PostgreSQL and Redis for tests: throwaway databases, and the skip policy.

A test that needs a service skips only where the service is truly absent (a
laptop without Postgres). CI sets ``DOCINTEL_REQUIRE_SERVICES=1`` (or ``CI``),
which turns that skip into a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

PG_ADMIN_URL = os.environ.get(
    "DOCINTEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DOCINTEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    flag = os.environ.get("DOCINTEL_REQUIRE_SERVICES") or os.environ.get("CI")
    return (flag or "").lower() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require(service: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    message = f"{service} is not reachable at {url}"
    if services_required():
        pytest.fail(message + " and DOCINTEL_REQUIRE_SERVICES forbids skipping", pytrace=False)
    pytest.skip(message)


def create_database(admin_url: str = PG_ADMIN_URL, prefix: str = "docintel_test") -> str:
    """Create an empty database and return its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, admin_url: str = PG_ADMIN_URL) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def redis_database() -> Iterator[str]:
    """Lease a Redis database number (1-15) no other test run is using; flush it.

    The leases live in database 0, not in the leased database: tests flush their
    own database on purpose (a lost broker), and a lease kept there vanished with
    it, so a test in another process took the same database while the first
    one's worker still consumed from it, and each lost the other's messages.
    """
    import redis

    require("Redis", REDIS_URL, 6379)
    base = REDIS_URL.rsplit("/", 1)[0]
    leases = redis.Redis.from_url(f"{base}/0")
    try:
        for number in range(1, 16):
            lease = f"docintel-test-lease:{number}"
            if not leases.set(lease, "1", nx=True, ex=3600):
                continue
            client = redis.Redis.from_url(f"{base}/{number}")
            client.flushdb()
            try:
                yield f"{base}/{number}"
            finally:
                client.flushdb()
                client.close()
                leases.delete(lease)
            return
    finally:
        leases.close()
    pytest.fail("no free Redis database (1-15) for this test")
