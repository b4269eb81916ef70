"""Phi-3.5-vision through the distributed pipeline: a CPU worker renders and finds the
tables, a GPU-queue worker (here on CPU, a tiny random checkpoint) reads them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from docintel.db import session_scope
from docintel.models import Extraction, Page
from docintel.service import submit, wait
from tests import services
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf
from tests.fixtures.tiny_phi35v import build_tiny_phi35v
from tests.runtime import apply_env, base_env, running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]


def test_tables_are_read_by_phi35v_on_the_gpu_queue_with_one_load(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = build_tiny_phi35v(tmp_path / "tiny-phi35v")
    with services.redis_database() as broker:
        env = {
            **base_env(tmp_path, pg_url, broker),
            "DOCINTEL_TABLE_ENGINE": "phi35v",
            "DOCINTEL_EXTRACT_MODEL": str(model_dir),
            # Random weights never end an answer: a short limit keeps the test fast.
            "DOCINTEL_EXTRACT_OPTIONS": json.dumps({"table_max_new_tokens": 4}),
            "DOCINTEL_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1",
        }
        settings = apply_env(monkeypatch, env)
        specs = [TableSpec(SALES, text_above=[f"Report {uuid.uuid4()} part {n}"]) for n in (1, 2)]
        paths = [
            make_table_pdf(tmp_path / f"tables{n}.pdf", [spec]) for n, spec in enumerate(specs)
        ]

        # Only the second worker listens on gpu: the tables are read there or not at all.
        with running_worker(env, queues="cpu"), running_worker(env, queues="gpu") as gpu:
            ids = [submit(settings, path).document_id for path in paths]
            states = wait(settings, ids, timeout_s=180, poll_s=0.3)
            assert [s.status for s in states] == ["done", "done"], gpu.log()
            log = gpu.log()
            assert "docintel.extract_batch" in log
            assert log.count("loaded Phi-3.5-vision") == 1, log

    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Extraction.status, Extraction.engine, Extraction.model, Extraction.error)
            .join(Page)
            .where(Page.document_id.in_(ids), Extraction.kind == "table")
        ).all()
    assert len(rows) == 2
    for status, engine, model, error in rows:
        assert (status, engine, model) == ("failed", "phi35v", str(model_dir))
        assert error == "the answer ran out of tokens (the limit is 4)"
