"""A real Celery worker on Redis and Postgres, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docintel.settings import Settings
from tests import services
from tests.runtime import WorkerProcess, apply_env, base_env, running_worker


@dataclass
class Distributed:
    env: dict[str, str]
    settings: Settings
    worker: WorkerProcess
    tmp: Path


@pytest.fixture(scope="module")
def cluster(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distributed]:
    tmp = tmp_path_factory.mktemp("distributed")
    with services.redis_database() as broker, pytest.MonkeyPatch.context() as mp:
        env = base_env(tmp, pg_url, broker)
        settings = apply_env(mp, env)
        with running_worker(env, concurrency=2) as worker:
            yield Distributed(env, settings, worker, tmp)
