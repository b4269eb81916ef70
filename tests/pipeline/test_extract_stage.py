"""The extraction stage end to end (eager queue, Postgres and SQLite): tables land in
the document JSON, its Markdown and text, and the SQL view; a failing engine never
fails the page's text."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from docintel.db import session_scope
from docintel.engines.base import EngineConfig, RegionInput, RegionResult
from docintel.engines.registry import register_extraction
from docintel.models import Document, DocumentStatus, Extraction, Page, PageStatus
from docintel.output import document_json, document_markdown, load_document
from docintel.pipeline.context import StageContext
from docintel.pipeline.extract import extract_batch
from docintel.service import submit
from docintel.settings import Settings
from tests.fixtures.documents import PdfPage, write_pdf
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf, table_page
from tests.runtime import apply_env, base_env


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    pdf: Path,
    env: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Settings, dict[str, Any], str]:
    settings = apply_env(monkeypatch, {**base_env(tmp_path, database_url), **(env or {})})
    submitted = submit(settings, pdf, options=options or {})
    with session_scope(settings.database_url) as session:
        doc = load_document(session, submitted.document_id)
        assert doc is not None
        return settings, document_json(doc), document_markdown(doc)


def _unique_pdf(tmp_path: Path, spec: TableSpec) -> Path:
    # Unique bytes: the Postgres database is shared by the session, equal bytes dedup.
    spec.text_above = [f"Sales report {uuid.uuid4()}"]
    return make_table_pdf(tmp_path / "sales.pdf", [spec])


def test_a_table_is_extracted_into_json_markdown_text_and_sql(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = TableSpec(SALES, text_below=["Figures are unaudited."])
    settings, out, markdown = _run(tmp_path, monkeypatch, database_url, _unique_pdf(tmp_path, spec))
    assert out["document"]["status"] == "done"
    page = out["pages"][0]
    assert page["status"] == "done" and "extract" in page["timings"]
    (table,) = page["tables"]
    assert table["status"] == "done" and table["engine"] == "cpu-tables"
    assert table["rows"] == [list(r) for r in SALES] and table["header_rows"] == 1
    north = next(c for c in table["cells"] if c["text"] == "North")
    assert (north["row"], north["col"], north["row_span"], north["col_span"]) == (1, 0, 1, 1)
    # Cell boxes are page pixels, inside the table's box.
    x0, y0, x1, y1 = table["bbox"]
    assert x0 - 8 <= north["bbox"][0] < north["bbox"][2] <= x1 + 8
    assert y0 - 8 <= north["bbox"][1] < north["bbox"][3] <= y1 + 8

    # In its place: after the title, before the note; its words are not repeated.
    title_at = markdown.index("Sales report")
    table_at = markdown.index("| Region | Units | Revenue | Margin |")
    assert title_at < table_at < markdown.index("Figures are unaudited.")
    assert markdown.count("North") == 1 and page["text"].count("1,204") == 1
    assert "North\t1,204\t$48.2 m\t12.5 %" in page["text"]

    with session_scope(settings.database_url) as session:
        row = session.execute(
            text(
                "SELECT page_number, table_index, table_number, status, rows, header_rows"
                " FROM document_tables WHERE document_id = :d"
            ),
            {"d": out["document"]["id"] if "sqlite" not in database_url else _sqlite_id(out)},
        ).one()
    rows = row.rows if isinstance(row.rows, list) else json.loads(row.rows)
    assert (row.page_number, row.table_index, row.table_number, row.status) == (1, 0, 1, "done")
    assert rows[2][0] == "South" and rows[2][3] == "" and row.header_rows == 1


def _sqlite_id(out: dict[str, Any]) -> str:
    # SQLAlchemy stores UUIDs on SQLite as 32 hex digits.
    return uuid.UUID(out["document"]["id"]).hex


def test_tables_false_in_the_options_skips_detection(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = _unique_pdf(tmp_path, TableSpec(SALES))
    _, out, markdown = _run(tmp_path, monkeypatch, database_url, pdf, options={"tables": False})
    page = out["pages"][0]
    assert page["status"] == "done" and page["tables"] == [] and "|" not in markdown
    assert "North" in page["text"]


def test_a_chart_without_an_engine_is_stored_with_its_title(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bars = b"".join(f"{100 + 60 * k} 300 40 {40 + 50 * k} re f\n".encode() for k in range(4))
    axes = b"1.5 w 90 300 m 90 560 l S 90 300 m 380 300 l S\n"
    title = f"Revenue by year {uuid.uuid4().hex[:6]}"
    ticks = b"BT /F1 9 Tf" + b"".join(
        f" 1 0 0 1 {108 + 60 * k} 288 Tm ({2020 + k}) Tj".encode() for k in range(4)
    )
    page = PdfPage(lines=[title], left=120, top=210, extra_content=axes + bars + ticks + b" ET\n")
    pdf = write_pdf(tmp_path / "chart.pdf", [page])
    _, out, _ = _run(tmp_path, monkeypatch, database_url, pdf)
    (chart,) = out["pages"][0]["charts"]
    assert chart["status"] == "no_engine" and chart["data"] is None
    assert chart["title"] == title and out["pages"][0]["status"] == "done"


class _Boom:
    name = "boom"

    def extract(self, regions: Sequence[RegionInput]) -> list[RegionResult]:
        raise RuntimeError("the engine fell over")


class _Garbage:
    name = "garbage"

    def extract(self, regions: Sequence[RegionInput]) -> list[RegionResult]:
        return [RegionResult("done", raw="<<not a table>>") for _ in regions]


def build_boom(config: EngineConfig) -> _Boom:
    return _Boom()


def build_garbage(config: EngineConfig) -> _Garbage:
    return _Garbage()


@pytest.mark.parametrize(
    ("engine", "error"),
    [("boom", "the engine fell over"), ("garbage", "the engine returned no data")],
)
def test_a_failing_engine_leaves_the_page_done_and_the_extraction_failed(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
    error: str,
) -> None:
    register_extraction(engine, f"{__name__}:build_{engine}")
    pdf = _unique_pdf(tmp_path, TableSpec(SALES))
    _, out, markdown = _run(
        tmp_path, monkeypatch, database_url, pdf, env={"DOCINTEL_TABLE_ENGINE": engine}
    )
    assert out["document"]["status"] == "done"
    page = out["pages"][0]
    assert page["status"] == "done" and "North" in page["text"]
    (table,) = page["tables"]
    assert table["status"] == "failed" and error in table["error"]
    assert table["engine"] == engine and "|" not in markdown


def test_regions_outside_the_page_or_without_words_fail_alone(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = _unique_pdf(tmp_path, TableSpec(SALES))
    settings, out, _ = _run(tmp_path, monkeypatch, database_url, pdf)
    doc_id = uuid.UUID(out["document"]["id"])
    with session_scope(settings.database_url) as session:
        page = session.scalars(select(Page).where(Page.document_id == doc_id)).one()
        session.add_all(
            [
                Extraction(
                    page_id=page.id,
                    kind="table",
                    idx=1,
                    bbox=[5000, 5000, 6000, 6000],
                    engine="test",
                    status="candidate",
                ),
                Extraction(
                    page_id=page.id,
                    kind="table",
                    idx=2,
                    bbox=[2, 2, 40, 40],
                    engine="test",
                    status="candidate",
                ),
            ]
        )
        # Back to where the page stage leaves it: waiting for extraction.
        session.execute(update(Page).where(Page.id == page.id).values(status=PageStatus.EXTRACT))
        session.execute(
            update(Document).where(Document.id == doc_id).values(status=DocumentStatus.PROCESSING)
        )
    with session_scope(settings.database_url) as session:
        extract_batch(StageContext(session, settings))
    with session_scope(settings.database_url) as session:
        page = session.scalars(select(Page).where(Page.document_id == doc_id)).one()
        assert page.status == PageStatus.DONE
        found = {e.idx: (e.status, e.error) for e in page.extractions}
    assert found[0][0] == "done"  # the real table, read again the same way
    assert found[1] == ("failed", "the region lies outside the page")
    assert found[2] == ("failed", "the region holds no text")


def test_extraction_runs_again_to_the_same_rows(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = _unique_pdf(tmp_path, TableSpec(SALES))
    settings, out, markdown = _run(tmp_path, monkeypatch, database_url, pdf)
    again = submit(settings, pdf, reprocess=True)
    with session_scope(settings.database_url) as session:
        doc = load_document(session, again.document_id)
        assert doc is not None
        second = document_json(doc)
        assert document_markdown(doc) == markdown
    assert second["pages"][0]["tables"] == out["pages"][0]["tables"]


def test_a_two_page_table_gives_a_table_on_each_page(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = TableSpec([SALES[0], *SALES[1:3]], text_above=[f"Part one {uuid.uuid4()}"])
    second = TableSpec([SALES[0], *SALES[3:]])
    pdf = write_pdf(tmp_path / "two.pdf", [table_page(first), table_page(second)])
    _, out, _ = _run(tmp_path, monkeypatch, database_url, pdf)
    assert [p["tables"][0]["rows"][1][0] for p in out["pages"]] == ["North", "East"]


def test_a_page_whose_extraction_keeps_killing_workers_is_done_without_it(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from docintel.models.base import utcnow
    from docintel.pipeline.sweeper import sweep

    pdf = _unique_pdf(tmp_path, TableSpec(SALES))
    settings, out, _ = _run(tmp_path, monkeypatch, database_url, pdf)
    doc_id = uuid.UUID(out["document"]["id"])
    with session_scope(settings.database_url) as session:
        # As a third worker that died holding the page's extraction leaves it.
        session.execute(
            update(Page)
            .where(Page.document_id == doc_id)
            .values(
                status=PageStatus.EXTRACT,
                claim_token=uuid.uuid4().hex,
                lease_expires_at=utcnow() - timedelta(minutes=5),
                attempts=settings.max_page_attempts,
            )
        )
        session.execute(
            update(Extraction)
            .values(status="candidate")
            .where(Extraction.page_id.in_(select(Page.id).where(Page.document_id == doc_id)))
        )
        session.execute(
            update(Document).where(Document.id == doc_id).values(status=DocumentStatus.PROCESSING)
        )
    with session_scope(settings.database_url) as session:
        sweep(StageContext(session, settings))
    with session_scope(settings.database_url) as session:
        page = session.scalars(select(Page).where(Page.document_id == doc_id)).one()
        assert page.status == PageStatus.DONE and page.claim_token is None
        assert page.text and "North" in page.text
        (table,) = page.extractions
        assert table.status == "failed" and (table.error or "").startswith("timeout")


def test_an_engine_that_cannot_be_loaded_fails_the_extractions_not_the_pages(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = _unique_pdf(tmp_path, TableSpec(SALES))
    _, out, _ = _run(
        tmp_path, monkeypatch, database_url, pdf, env={"DOCINTEL_TABLE_ENGINE": "no.such:engine"}
    )
    assert out["document"]["status"] == "done"
    (table,) = out["pages"][0]["tables"]
    assert table["status"] == "failed" and "cannot load the extraction engine" in table["error"]
