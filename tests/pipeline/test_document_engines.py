"""Engines chosen per document: each page waits on the queue of the engine its document
chose, a batch task of one queue takes only its own pages, and each engine reads only
the pages and regions of the documents that chose it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from docintel import migrate
from docintel.db import session_scope
from docintel.engines import registry
from docintel.engines.base import EngineConfig
from docintel.models import Page, PageStatus
from docintel.output import document_json, load_document
from docintel.pipeline import page, split, sweeper
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.extract import extract_batch
from docintel.pipeline.ingest import ingest_file
from docintel.pipeline.ocr import ocr_batch
from docintel.pipeline.routing import engine_choice_error, extraction_config, ocr_engine_config
from docintel.service import submit, wait
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf
from tests.runtime import apply_env, base_env


@pytest.fixture
def own_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A database of its own: batch claims take any waiting page, of any test."""
    url = f"sqlite:///{tmp_path / 'engines.db'}"
    migrate.upgrade(url)
    return apply_env(monkeypatch, base_env(tmp_path, url))


def _render(settings: Settings, path: Path, options: dict[str, Any]) -> uuid.UUID:
    """Ingest, split and render, sending nothing: the pages wait where routing put them."""
    with session_scope(settings.database_url) as session:
        doc_id = ingest_file(StageContext(session, settings), path, options=options).document_id
    with session_scope(settings.database_url) as session:
        page_ids = [
            f.args[0] for f in split.split_document(StageContext(session, settings), str(doc_id))
        ]
    for page_id in page_ids:
        with session_scope(settings.database_url) as session:
            page.process_page(StageContext(session, settings), page_id)
    return doc_id


def _page(settings: Settings, doc_id: uuid.UUID) -> Page:
    with session_scope(settings.database_url) as session:
        found = session.scalars(select(Page).where(Page.document_id == doc_id)).one()
        session.expunge(found)
        return found


def test_ocr_pages_wait_on_the_queue_of_their_documents_engine(
    own_sqlite: Settings, tmp_path: Path
) -> None:
    settings = own_sqlite  # the deployment reads with rapidocr, on the cpu queue
    default = _render(
        settings, fx.make_scanned_pdf(tmp_path / "a.pdf", ["Invoice number 7731 paid in full"]), {}
    )
    chosen = _render(
        settings,
        fx.make_scanned_pdf(tmp_path / "b.pdf", ["Receipt number 5120 paid in full"]),
        {"ocr_engine": "florence2"},
    )
    assert (_page(settings, default).status, _page(settings, default).queue) == ("ocr", "cpu")
    assert (_page(settings, chosen).status, _page(settings, chosen).queue) == ("ocr", "gpu")

    # Lost messages are re-sent to each queue that has pages waiting.
    with session_scope(settings.database_url) as session:
        sent = sweeper.sweep(StageContext(session, settings), broker_lost=True)
    wake_ups = [f for f in sent if f.task == "docintel.ocr_batch"]
    assert sorted(wake_ups, key=lambda f: f.args) == [
        FollowUp("docintel.ocr_batch", ("cpu",), queue="cpu"),
        FollowUp("docintel.ocr_batch", ("gpu",), queue="gpu"),
    ]

    # A cpu batch, however often it runs, never takes the page that needs the GPU model.
    for _ in range(2):
        with session_scope(settings.database_url) as session:
            ocr_batch(StageContext(session, settings), "cpu")
    read = _page(settings, default)
    assert (read.status, read.engine) == (PageStatus.DONE, "rapidocr")
    assert "7731" in (read.text or "")
    waiting = _page(settings, chosen)
    assert (waiting.status, waiting.claim_token, waiting.attempts) == ("ocr", None, 0)


def test_extraction_waits_on_the_gpu_only_for_regions_a_model_reads(
    own_sqlite: Settings, tmp_path: Path
) -> None:
    settings = own_sqlite
    tables_by_model = _render(
        settings, make_table_pdf(tmp_path / "a.pdf", [TableSpec(SALES)]), {"table_engine": "vlm"}
    )
    # A page with only a table needs no GPU because a model reads this document's charts.
    spec = TableSpec(SALES, text_above=["Second report"])
    charts_by_model = _render(
        settings, make_table_pdf(tmp_path / "b.pdf", [spec]), {"chart_engine": "phi35v"}
    )
    assert (_page(settings, tables_by_model).status, _page(settings, tables_by_model).queue) == (
        "extract",
        "gpu",
    )
    assert _page(settings, charts_by_model).queue == "cpu"

    with session_scope(settings.database_url) as session:
        extract_batch(StageContext(session, settings), "cpu")
    assert _page(settings, charts_by_model).status == PageStatus.DONE
    assert _page(settings, tables_by_model).status == "extract"


def test_each_document_reads_its_tables_with_the_engine_it_chose(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = apply_env(monkeypatch, base_env(tmp_path, database_url))
    run = uuid.uuid4().hex[:8]  # the Postgres database is shared: equal bytes would dedup
    read = make_table_pdf(tmp_path / "a.pdf", [TableSpec(SALES, text_above=[f"Read {run}"])])
    unread = make_table_pdf(tmp_path / "b.pdf", [TableSpec(SALES, text_above=[f"Kept {run}"])])
    ids = [
        submit(settings, read).document_id,
        submit(settings, unread, options={"table_engine": "none"}).document_id,
    ]
    with session_scope(settings.database_url) as session:
        out = [document_json(load_document(session, doc_id)) for doc_id in ids]  # type: ignore[arg-type]
    ((extracted,), (stored,)) = (o["pages"][0]["tables"] for o in out)
    assert (extracted["status"], extracted["engine"]) == ("done", "cpu-tables")
    assert "| North" in out[0]["pages"][0]["markdown"]
    assert (stored["status"], stored["engine"]) == ("no_engine", "none")
    assert stored["rows"] == [] and "North" in out[1]["pages"][0]["text"]
    assert out[1]["document"]["status"] == "done"


class _NeedsDriver(RuntimeError):
    pass


def build_needs_driver(config: EngineConfig) -> Any:
    raise _NeedsDriver("no CUDA driver on this host")


def test_a_page_whose_engine_loads_nowhere_waits_for_no_one_and_fails_its_tables_only(
    own_sqlite: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        registry._EXTRACTION_FACTORIES, "needs-driver", f"{__name__}:build_needs_driver"
    )
    quick = {"DOCINTEL_LEASE_S": "2", "DOCINTEL_SWEEP_INTERVAL_S": "1"}
    settings = apply_env(monkeypatch, {**quick, "DOCINTEL_MAX_PAGE_ATTEMPTS": "2"})
    stuck = make_table_pdf(tmp_path / "a.pdf", [TableSpec(SALES)])
    later = make_table_pdf(tmp_path / "b.pdf", [TableSpec(SALES, text_above=["Later"])])
    # Submitted first: its page is the oldest waiting, the one every claim takes first.
    ids = [submit(settings, stuck, options={"table_engine": "needs-driver"}).document_id]
    ids.append(submit(settings, later).document_id)
    assert _page(settings, ids[1]).status == PageStatus.DONE  # not held up behind it

    assert [p.status for p in wait(settings, ids, timeout_s=60, poll_s=0.2)] == ["done"] * 2
    with session_scope(settings.database_url) as session:
        out = document_json(load_document(session, ids[0]))  # type: ignore[arg-type]
    page_json = out["pages"][0]
    (table,) = page_json["tables"]
    assert page_json["status"] == "done" and "North" in page_json["text"]
    assert table["status"] == "failed" and table["error"].startswith("timeout: no result after 2")
    assert "the needs-driver extraction engine did not load on" in table["error"]
    assert "no CUDA driver on this host" in table["error"]


def test_only_registered_engines_may_be_chosen() -> None:
    assert engine_choice_error({"ocr_engine": "florence2", "chart_engine": "none"}) is None
    assert "ocr_engine must be one of" in (engine_choice_error({"ocr_engine": "tesseract"}) or "")
    # A client must not make a worker import a module of its choosing.
    assert engine_choice_error({"table_engine": "os:system"}) is not None
    assert engine_choice_error({"chart_engine": 7}) is not None


def test_a_chosen_engine_runs_with_its_defaults_and_its_own_checkpoint() -> None:
    settings = Settings(
        ocr_engine="rapidocr",
        ocr_options={"text_score": 0.6},
        table_engine="phi35v",
        extract_model="/models/phi35v",
        extract_options={"table_max_crops": 4},
        engine_models={"vlm": "/models/qwen2-vl"},
    )
    configured = ocr_engine_config(settings)
    assert (configured.name, dict(configured.options)) == ("rapidocr", {"text_score": 0.6})
    chosen = ocr_engine_config(settings, "florence2")
    assert (chosen.model, dict(chosen.options)) == (settings.ocr_model, {})
    tables = extraction_config(settings, "phi35v")
    assert tables is not None and tables.model == "/models/phi35v" and tables.options
    other = extraction_config(settings, "vlm")
    assert other is not None and (other.model, dict(other.options)) == ("/models/qwen2-vl", {})
    assert extraction_config(settings, "none") is None
