"""End to end through real worker processes on Redis and Postgres."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, Line, Page
from docintel.output import document_json, load_document
from docintel.service import submit, wait
from tests.fixtures import documents as fx
from tests.queue.conftest import Distributed
from tests.text_metrics import cer

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

SCAN_TEXT = "The quick brown fox jumps over the lazy dog\nInvoice number 4711 due 2024-03-01"


def _run(cluster: Distributed, path: Path, timeout: float = 120) -> dict:
    doc_id = submit(cluster.settings, path).document_id
    (state,) = wait(cluster.settings, [doc_id], timeout_s=timeout, poll_s=0.2)
    assert state.terminal, f"not finished in {timeout}s; worker log:\n{cluster.worker.log()}"
    with session_scope(cluster.settings.database_url) as session:
        doc = load_document(session, doc_id)
        assert doc is not None
        return document_json(doc)


def test_born_digital_pdf_uses_its_text_layer_exactly(cluster: Distributed, tmp_path: Path) -> None:
    pages = ["Annual report 2023\nRevenue rose by 12 percent", "Second page\nClosing remarks"]
    result = _run(cluster, fx.make_text_pdf(tmp_path / "digital.pdf", pages))
    assert result["document"]["status"] == "done"
    assert [p["text_source"] for p in result["pages"]] == ["native", "native"]
    assert [p["text"] for p in result["pages"]] == pages
    first = result["pages"][0]
    assert first["dpi"] == 150 and first["width"] == round(612 * 150 / 72)
    for line in first["lines"]:
        xs, ys = line["polygon"][0::2], line["polygon"][1::2]
        assert 0 <= min(xs) < max(xs) <= first["width"]
        assert 0 <= min(ys) < max(ys) <= first["height"]


def test_scanned_pdf_goes_through_ocr(cluster: Distributed, tmp_path: Path) -> None:
    path = fx.make_scanned_pdf(
        tmp_path / "scan.pdf", [SCAN_TEXT], dpi=150, skew_deg=1.0, noise=0.01
    )
    result = _run(cluster, path)
    page = result["pages"][0]
    assert result["document"]["status"] == "done"
    assert page["text_source"] == "ocr"
    assert cer(page["text"], SCAN_TEXT) < 0.1, page["text"]
    assert all(0 < line["confidence"] <= 1 for line in page["lines"])


def test_multipage_tiff_gives_one_page_per_frame(cluster: Distributed, tmp_path: Path) -> None:
    texts = ["First frame of the fax", "Second frame here", "Third and last frame"]
    result = _run(
        cluster, fx.make_multipage_tiff(tmp_path / "fax.tiff", texts, dpi=150, size_px=(900, 300))
    )
    assert result["document"]["media_type"] == "image/tiff"
    assert result["document"]["page_count"] == 3
    for page, text in zip(result["pages"], texts, strict=True):
        assert cer(page["text"], text) < 0.15, (page["text"], text)


def test_mixed_document_reads_native_pages_and_ocrs_scans(
    cluster: Distributed, tmp_path: Path
) -> None:
    pages = ["Typed page one", "Scanned page two has words", "Typed page three"]
    result = _run(cluster, fx.make_mixed_pdf(tmp_path / "mixed.pdf", pages, scanned={2}, dpi=150))
    assert [p["text_source"] for p in result["pages"]] == ["native", "ocr", "native"]
    assert result["pages"][0]["text"] == pages[0]
    assert cer(result["pages"][1]["text"], pages[1]) < 0.15


def test_resubmitting_the_same_bytes_gives_the_same_document(
    cluster: Distributed, tmp_path: Path
) -> None:
    path = fx.make_text_pdf(tmp_path / "once.pdf", ["Submitted twice"])
    first = _run(cluster, path)
    copy = tmp_path / "renamed-copy.pdf"
    copy.write_bytes(path.read_bytes())
    again = submit(cluster.settings, copy)
    assert not again.created
    assert str(again.document_id) == first["document"]["id"]
    with session_scope(cluster.settings.database_url) as session:
        sha = first["document"]["sha256"]
        assert session.scalar(select(func.count()).where(Document.sha256 == sha)) == 1


BAD_INPUTS = {
    "encrypted": lambda p: fx.make_encrypted_pdf(p / "locked.pdf", user_password="secret"),
    "corrupt": lambda p: fx.make_corrupt_pdf(p / "truncated.pdf", "truncated"),
    "zero_pages": lambda p: fx.make_zero_page_pdf(p / "empty-tree.pdf"),
    "unsupported_type": lambda p: _write(p / "notes.pdf", b"This is not a valid PDF file at all."),
    "empty_file": lambda p: _write(p / "nothing.pdf", b""),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_inputs_fail_with_their_code_and_leave_others_alone(
    cluster: Distributed, tmp_path: Path
) -> None:
    bad = {
        code: submit(cluster.settings, make(tmp_path)).document_id
        for code, make in BAD_INPUTS.items()
    }
    bomb = submit(
        cluster.settings, fx.make_bomb_pdf(tmp_path / "bomb.pdf", pages_before=1)
    ).document_id
    good = submit(
        cluster.settings, fx.make_text_pdf(tmp_path / "fine.pdf", ["Still fine"])
    ).document_id
    states = {
        p.document_id: p for p in wait(cluster.settings, [*bad.values(), bomb, good], timeout_s=120)
    }
    with session_scope(cluster.settings.database_url) as session:
        for code, doc_id in bad.items():
            doc = session.get(Document, doc_id)
            assert doc is not None
            assert (doc.status, doc.error_code) == ("failed", code), doc.error_message
            assert doc.error_message
        # A bomb page fails alone: the document is partial, its sane page is done.
        bomb_pages = {
            p.number: p for p in session.scalars(select(Page).where(Page.document_id == bomb))
        }
        assert states[bomb].status == "partial"
        assert bomb_pages[1].status == "done"
        assert bomb_pages[2].error_code == "page_too_large"
        assert states[good].status == "done"


def test_every_page_is_stored_once(cluster: Distributed, tmp_path: Path) -> None:
    texts = [f"Page {n} of a longer document" for n in range(1, 9)]
    result = _run(cluster, fx.make_text_pdf(tmp_path / "eight.pdf", texts))
    doc_id = uuid.UUID(result["document"]["id"])
    with session_scope(cluster.settings.database_url) as session:
        numbers = session.scalars(select(Page.number).where(Page.document_id == doc_id)).all()
        assert sorted(numbers) == list(range(1, 9))
        lines = session.scalar(
            select(func.count()).select_from(Line).join(Page).where(Page.document_id == doc_id)
        )
        assert lines == 8


def test_the_cli_submits_to_the_workers_and_waits(cluster: Distributed, tmp_path: Path) -> None:
    """`docintel process` with a broker configured: the workers do the work, the CLI
    waits for them and writes the same contract JSON as in embedded mode."""
    import json
    import os
    import subprocess
    import sys

    marker = uuid.uuid4().hex[:8]
    digital = fx.make_text_pdf(tmp_path / "cli.pdf", [f"Submitted by the CLI {marker}"])
    broken = fx.make_corrupt_pdf(tmp_path / "broken.pdf")
    out = tmp_path / "out"
    argv = ["process", str(digital), str(broken), "--out", str(out), "--quiet"]  # errors only
    result = subprocess.run(
        [sys.executable, "-m", "docintel", *argv],
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("docintel: ")
    ]
    assert "broken.pdf: failed: corrupt" in result.stderr
    doc = json.loads((out / "cli.json").read_text())
    assert doc["document"]["status"] == "done"
    assert doc["pages"][0]["text"] == f"Submitted by the CLI {marker}"
    with session_scope(cluster.settings.database_url) as session:
        # The CLI wrote into the cluster's Postgres, not an embedded SQLite file.
        stored = session.get(Document, uuid.UUID(doc["document"]["id"]))
        assert stored is not None and stored.status == "done"
    assert not (Path(cluster.env["DOCINTEL_DATA_DIR"]) / "docintel.db").exists()
