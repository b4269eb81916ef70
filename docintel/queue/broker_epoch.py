"""Tell whether the broker lost its messages: a generation mark kept in the broker itself.

The sweep picks a random epoch, records it in the database and sets the key
``docintel:epoch:<epoch>`` in Redis. A Redis that comes back from a restart
without its data, a ``FLUSHDB`` or a failover to an empty replica no longer
has the key: every message that was queued is gone, and the sweep re-sends
all waiting work at once instead of waiting for the safety net. The key is
named by the epoch, so two deployments sharing one Redis cannot mistake each
other's marks for their own. Other brokers (and Redis Sentinel URLs) are not checked.
"""

from __future__ import annotations

from typing import Any

_PREFIX = "docintel:epoch:"


def checkable(broker_url: str) -> bool:
    return broker_url.startswith(("redis://", "rediss://"))


def intact(broker_url: str, epoch: str | None) -> bool:
    """Whether the broker still holds the mark of ``epoch`` (no epoch yet: it does not)."""
    if epoch is None:
        return False
    client = _client(broker_url)
    try:
        return bool(client.exists(_PREFIX + epoch))
    finally:
        client.close()


def mark(broker_url: str, epoch: str, previous: str | None) -> None:
    client = _client(broker_url)
    try:
        client.set(_PREFIX + epoch, "1")
        if previous is not None:
            client.delete(_PREFIX + previous)
    finally:
        client.close()


def _client(broker_url: str) -> Any:
    import redis

    return redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=10)
