"""The broker's generation mark, on a real Redis: a flush is noticed, and two
deployments sharing one Redis do not mistake each other's marks."""

from __future__ import annotations

import pytest
import redis

from docintel.queue import broker_epoch

pytestmark = pytest.mark.redis


def test_a_flushed_broker_no_longer_holds_the_mark(redis_db_url: str) -> None:
    assert broker_epoch.checkable(redis_db_url)
    assert not broker_epoch.intact(redis_db_url, None)  # never marked: nothing to trust
    broker_epoch.mark(redis_db_url, "one", previous=None)
    assert broker_epoch.intact(redis_db_url, "one")
    redis.Redis.from_url(redis_db_url).flushdb()
    assert not broker_epoch.intact(redis_db_url, "one")


def test_marks_of_two_deployments_live_side_by_side(redis_db_url: str) -> None:
    broker_epoch.mark(redis_db_url, "ours", previous=None)
    broker_epoch.mark(redis_db_url, "theirs", previous=None)
    assert broker_epoch.intact(redis_db_url, "ours") and broker_epoch.intact(redis_db_url, "theirs")
    broker_epoch.mark(redis_db_url, "ours-next", previous="ours")  # our next generation
    assert not broker_epoch.intact(redis_db_url, "ours")
    assert broker_epoch.intact(redis_db_url, "theirs")


def test_other_brokers_are_not_checked() -> None:
    assert not broker_epoch.checkable("amqp://guest@localhost//")
    assert not broker_epoch.checkable("memory://")
