"""Tell whether the broker lost its messages: a generation mark kept in the broker itself.

The sweep writes a random epoch both into the database and into Redis. A
Redis that comes back from a restart without its data, a ``FLUSHDB`` or a
failover to an empty replica has no mark (or another one): every message that
was queued is gone, and the sweep re-sends all waiting work at once instead
of waiting for the safety net. Brokers other than Redis are not checked.
"""

from __future__ import annotations

KEY = "docintel:broker-epoch"


def checkable(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://", "unix://"))


def read(broker_url: str) -> str | None:
    client = _client(broker_url)
    try:
        value = client.get(KEY)
    finally:
        client.close()
    return value.decode() if isinstance(value, bytes) else value


def write(broker_url: str, epoch: str) -> None:
    client = _client(broker_url)
    try:
        client.set(KEY, epoch)
    finally:
        client.close()


def _client(broker_url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=10)
