"""Redis killed and restarted mid-run, with its data kept and with it lost.

A real worker and a real ``docintel process`` run against a ``redis-server`` of
the test's own. Both must reconnect by themselves, and every page must end
done exactly once: a Redis that came back empty has lost the queued messages,
which the sweep notices and sends again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, Page, PageStatus
from tests.faults.audit import make_batch, tally
from tests.faults.servers import redis_server
from tests.runtime import apply_env, base_env, running_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

DOWN_S = 3.0


def _pages_done(database_url: str) -> int:
    with session_scope(database_url) as session:
        query = select(func.count()).where(Page.status == PageStatus.DONE)
        return session.scalar(query) or 0


@pytest.mark.parametrize("keep_data", [True, False], ids=["data-kept", "data-lost"])
def test_redis_restart_mid_run_loses_nothing(
    keep_data: bool, own_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = make_batch(tmp_path, documents=3, pages=3)
    with redis_server(tmp_path / "redis", keep_data=keep_data) as redis:
        env = {
            **base_env(tmp_path, own_db, redis.url),
            # Short clocks, and renders slow enough for the restart to land mid-run.
            "DOCINTEL_LEASE_S": "3",
            "DOCINTEL_SWEEP_INTERVAL_S": "1",
            "DOCINTEL_TEST_STAGE_DELAYS": '{"render": 1}',
        }
        settings = apply_env(monkeypatch, env)
        with running_worker(env, concurrency=2) as worker:
            argv = [sys.executable, "-m", "docintel", "process", *map(str, batch)]
            cli = subprocess.Popen(
                [*argv, "--out", str(tmp_path / "out"), "--timeout", "150"],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                wait_until(lambda: _pages_done(own_db) >= 2, 60, "the first pages")
                redis.kill()
                assert _pages_done(own_db) < 9, "the run ended before the fault; slow it down"
                time.sleep(DOWN_S)
                redis.start()
                restarted = time.monotonic()
                _, errors = cli.communicate(timeout=170)
                recover_s = time.monotonic() - restarted
            finally:
                if cli.poll() is None:
                    cli.kill()
            assert cli.returncode == 0, f"{errors}\n{worker.log()}"
            # Reconnected, the worker sent all waiting work again: a message popped as
            # the connection died is gone even when Redis kept its data.
            if keep_data:
                assert "lost with a broken broker connection" in worker.log_path.read_text()

    with session_scope(settings.database_url) as session:
        ids = {doc.filename: doc.id for doc in session.scalars(select(Document))}
    count = tally(settings, {ids[path.name]: texts for path, texts in batch.items()})
    count.row(f"redis restarted, data {'kept' if keep_data else 'lost'}", recover_s)
    assert (count.done, count.duplicated, count.lost) == (count.expected, 0, 0)
