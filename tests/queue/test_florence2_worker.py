"""Florence-2 through the whole distributed pipeline: a CPU worker renders, a GPU-queue
worker (here on CPU, with a tiny random checkpoint) claims the pages and runs OCR."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from docintel.db import session_scope
from docintel.models import Extraction, Line, Page
from docintel.service import submit, wait
from tests import services
from tests.fixtures import documents as fx
from tests.fixtures.tiny_florence2 import build_tiny_florence2, loc
from tests.runtime import apply_env, base_env, running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]


def test_scans_are_read_by_florence2_on_the_gpu_queue(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny checkpoint is wired to answer this line for every tile, whatever the image,
    # so real lines flow through tiling, parsing, merging and the database.
    answer = "Total 42.00" + loc(100, 100, 500, 100, 500, 200, 100, 200)
    model_dir = build_tiny_florence2(tmp_path / "tiny-florence2", answer=answer)
    with services.redis_database() as broker:
        env = {
            **base_env(tmp_path, pg_url, broker),
            "DOCINTEL_OCR_ENGINE": "florence2",
            "DOCINTEL_OCR_MODEL": str(model_dir),
            "DOCINTEL_DEVICE": "cpu",
            "DOCINTEL_GPU_BATCH_PAGES": "4",
            "HF_HUB_OFFLINE": "1",
            "DOCINTEL_OCR_OPTIONS": '{"tile_size": 4096}',  # one tile per page
        }
        settings = apply_env(monkeypatch, env)
        texts = [f"Scanned page {n}" for n in range(1, 4)]
        path = fx.make_mixed_pdf(tmp_path / "mixed.pdf", ["Typed page", *texts], scanned={2, 3, 4})

        # Two workers, as in production: only the second listens on the gpu queue, so
        # the document can only finish if OCR was routed there.
        with running_worker(env, queues="cpu"), running_worker(env, queues="gpu") as gpu:
            doc_id = submit(settings, path).document_id
            (state,) = wait(settings, [doc_id], timeout_s=180, poll_s=0.3)
            assert state.status == "done", gpu.log()
            assert "docintel.ocr_batch" in gpu.log()

    with session_scope(settings.database_url) as session:
        pages = {
            p.number: p for p in session.scalars(select(Page).where(Page.document_id == doc_id))
        }
        assert pages[1].text_source == "native" and pages[1].text == "Typed page"
        assert {pages[n].text_source for n in (2, 3, 4)} == {"ocr"}
        ocr_ids = [pages[n].id for n in (2, 3, 4)]
        for number in (2, 3, 4):
            page = pages[number]
            (line,) = session.scalars(select(Line).where(Line.page_id == page.id)).all()
            assert (line.text, line.engine, page.text) == (
                "Total 42.00",
                "florence2",
                "Total 42.00",
            )
            # <loc_100>..<loc_500> are thousandths of the page image: back in page pixels.
            width, height = page.width or 0, page.height or 0
            assert line.polygon[0] == pytest.approx(0.1005 * width, abs=2)
            assert line.polygon[5] == pytest.approx(0.2005 * height, abs=2)
        kinds = set(session.scalars(select(Extraction.kind).where(Extraction.page_id.in_(ocr_ids))))
        assert kinds <= {"table", "chart"}


def test_a_document_chooses_florence2_where_the_deployment_reads_with_rapidocr(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = "Total 42.00" + loc(100, 100, 500, 100, 500, 200, 100, 200)
    model_dir = build_tiny_florence2(tmp_path / "tiny-florence2", answer=answer)
    run = uuid.uuid4().hex[:8]  # the session's database: equal bytes would dedup
    with services.redis_database() as broker:
        env = {
            **base_env(tmp_path, pg_url, broker),
            "DOCINTEL_OCR_MODEL": str(model_dir),  # the engine stays rapidocr
            "DOCINTEL_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1",
        }
        settings = apply_env(monkeypatch, env)
        default = fx.make_scanned_pdf(tmp_path / "a.pdf", [f"Invoice number 7731 run {run}"])
        chosen = fx.make_scanned_pdf(tmp_path / "b.pdf", [f"Receipt number 5120 run {run}"])
        with running_worker(env, queues="cpu") as cpu, running_worker(env, queues="gpu") as gpu:
            ids = [
                submit(settings, default).document_id,
                submit(settings, chosen, options={"ocr_engine": "florence2"}).document_id,
            ]
            states = wait(settings, ids, timeout_s=180, poll_s=0.3)
            assert [s.status for s in states] == ["done", "done"], gpu.log()
            cpu_pids, gpu_pids = cpu.pids(), gpu.pids()

    with session_scope(settings.database_url) as session:
        read_by_default, read_by_choice = (
            session.scalars(select(Page).where(Page.document_id == doc_id)).one() for doc_id in ids
        )
        assert read_by_default.engine == "rapidocr" and "7731" in (read_by_default.text or "")
        assert read_by_choice.engine == "florence2"
        lines = session.scalars(select(Line).where(Line.page_id == read_by_choice.id)).all()
        assert lines and {(line.text, line.engine) for line in lines} == {
            ("Total 42.00", "florence2")
        }
        # Each OCR ran on the worker of its queue (claimed_by is "host:pid").
        assert int((read_by_default.claimed_by or ":0").rsplit(":", 1)[1]) in cpu_pids
        assert int((read_by_choice.claimed_by or ":0").rsplit(":", 1)[1]) in gpu_pids


def test_process_says_when_no_worker_serves_the_engine_a_document_chose(
    own_db: str, tmp_path: Path
) -> None:
    scan = fx.make_scanned_pdf(tmp_path / "scan.pdf", ["Receipt number 5120 paid in full"])
    with services.redis_database() as broker:
        env = base_env(tmp_path, own_db, broker)
        with running_worker(env, queues="cpu"):  # renders, but runs no model
            argv = [sys.executable, "-m", "docintel", "process", str(scan)]
            argv += ["--out", str(tmp_path / "out"), "--ocr-engine", "florence2", "--timeout", "15"]
            waited = subprocess.run(
                argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
            )
    assert waited.returncode == 1
    assert "no worker consumes the 'gpu' queue" in waited.stderr, waited.stderr
    assert "'cpu' queue" not in waited.stderr
    with session_scope(own_db) as session:
        (page,) = session.scalars(select(Page)).all()
        assert (page.status, page.queue, page.claim_token) == ("ocr", "gpu", None)
