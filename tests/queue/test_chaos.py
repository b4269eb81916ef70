"""The chaos soak, short: pages through three workers while one is SIGKILLed every few
seconds (the one that swept last among them) and replaced. Nothing lost, nothing
duplicated, nothing left processing. The full soak is ``benchmarks/chaos_soak.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.chaos_soak import SoakPlan, report, run_soak
from tests import services
from tests.runtime import reset_process_state

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]


def test_workers_killed_at_random_lose_and_duplicate_nothing(pg_url: str, tmp_path: Path) -> None:
    plan = SoakPlan(
        pages=60,
        scanned_pages=5,
        workers=3,
        kill_every_s=3,
        max_kills=4,  # the third is the sweeper
        timeout_s=300,
        env={
            "DOCINTEL_LEASE_S": "4",
            "DOCINTEL_SWEEP_INTERVAL_S": "1",
            # Pages take a while, so the kills land on workers that hold some.
            "DOCINTEL_TEST_STAGE_DELAYS": '{"render": 0.6}',
        },
    )
    saved = dict(os.environ)
    try:
        with services.redis_database() as broker:
            result = run_soak(plan, tmp_path, pg_url, broker)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_process_state()
    table = report(result, plan)
    assert len(result.kills) == 4, table
    assert sum(len(k.held) for k in result.kills) >= 2, table
    assert any(k.was_sweeper for k in result.kills), table
    assert result.documents_done == result.documents, table
    assert result.still_processing == 0, table
    assert (result.pages_done, result.pages_lost) == (60, 0), table
    assert result.lines_duplicated == 0, table
    # Every page a killed worker held was finished by another, within lease + sweep + work.
    assert result.unfinished_held == 0, table
    assert all(wait < 60 for wait in result.waits), table
    print(table)
