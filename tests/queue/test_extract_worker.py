"""The extraction stage through real worker processes on Redis and Postgres."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from docintel.db import session_scope
from docintel.document.render import render_page
from docintel.output import document_json, document_markdown, load_document
from docintel.service import submit, wait
from tests import services
from tests.fixtures.documents import PdfPage, write_pdf
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf, scanned
from tests.runtime import apply_env, base_env, running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


def _process(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdfs: list[Path], **env: str
) -> list[tuple[dict[str, Any], str, list[Any]]]:
    with services.redis_database() as broker:
        worker_env = {**base_env(tmp_path, pg_url, broker), **env}
        settings = apply_env(monkeypatch, worker_env)
        with running_worker(worker_env, concurrency=2) as worker:
            ids = [submit(settings, pdf).document_id for pdf in pdfs]
            states = wait(settings, ids, timeout_s=120, poll_s=0.2)
            assert all(s.terminal for s in states), worker.log()
    results = []
    with session_scope(settings.database_url) as session:
        for doc_id in ids:
            doc = load_document(session, doc_id)
            assert doc is not None
            rows = session.execute(
                text("SELECT rows FROM document_tables WHERE document_id = :d ORDER BY 1"),
                {"d": doc_id},
            ).all()
            results.append((document_json(doc), document_markdown(doc), [r.rows for r in rows]))
    return results


def _table_pdf(tmp_path: Path, name: str) -> Path:
    spec = TableSpec(SALES, text_above=[f"Sales {uuid.uuid4()}"], font_size=12)
    return make_table_pdf(tmp_path / name, [spec])


def _scanned_pdf(tmp_path: Path) -> Path:
    born_digital = _table_pdf(tmp_path, "original.pdf")
    image = scanned(
        render_page(born_digital, "application/pdf", 1, 200, max_page_pixels=10**9).image, seed=7
    )
    page = PdfPage(image=image)
    return write_pdf(tmp_path / "scanned.pdf", [page])


def test_tables_from_born_digital_and_scanned_pages(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdfs = [_table_pdf(tmp_path, "digital.pdf"), _scanned_pdf(tmp_path)]
    (digital, digital_md, digital_sql), (scan, _, scan_sql) = _process(
        pg_url, tmp_path, monkeypatch, pdfs
    )
    page = digital["pages"][0]
    assert page["text_source"] == "native" and page["status"] == "done"
    assert page["tables"][0]["status"] == "done"
    assert page["tables"][0]["rows"] == [list(r) for r in SALES]
    assert "| North | 1,204 | $48.2 m | 12.5 % |" in digital_md
    assert digital_sql == [[list(r) for r in SALES]]

    page = scan["pages"][0]
    assert page["text_source"] == "ocr" and page["status"] == "done"
    (table,) = page["tables"]
    assert table["status"] == "done" and len(table["rows"]) == len(SALES)
    assert [row[0] for row in table["rows"]] == [row[0] for row in SALES]
    assert scan_sql == [table["rows"]] and json.dumps(scan_sql)


def test_an_engine_that_raises_leaves_pages_done_and_extractions_failed(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ((out, markdown, _),) = _process(
        pg_url,
        tmp_path,
        monkeypatch,
        [_table_pdf(tmp_path, "boom.pdf")],
        DOCINTEL_TABLE_ENGINE="tests.pipeline.test_extract_stage:build_boom",
    )
    assert out["document"]["status"] == "done"
    page = out["pages"][0]
    assert page["status"] == "done" and "North" in page["text"]
    assert page["tables"][0]["status"] == "failed"
    assert "the engine fell over" in page["tables"][0]["error"]
    assert "| North" not in markdown
