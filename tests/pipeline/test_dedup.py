"""The same bytes submitted at the same moment become one document, processed once."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Document, Line, Page
from docintel.pipeline.ingest import IngestResult
from docintel.service import submit
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

SUBMITTERS = 6


def test_concurrent_submissions_of_the_same_bytes(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = apply_env(monkeypatch, base_env(tmp_path, database_url))  # eager: submit runs it
    texts = [f"Sent six times at once {uuid.uuid4()}", "Page 2"]  # unique: a shared database
    original = fx.make_text_pdf(tmp_path / "original.pdf", texts)
    copies = []
    for n in range(SUBMITTERS):  # different names, same bytes
        copy = tmp_path / f"copy-{n}.pdf"
        copy.write_bytes(original.read_bytes())
        copies.append(copy)

    start = threading.Barrier(SUBMITTERS)
    results: list[IngestResult] = []
    errors: list[BaseException] = []

    def send(path: Path) -> None:
        start.wait()
        try:
            results.append(submit(settings, path))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(path,)) for path in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len({r.document_id for r in results}) == 1
    assert sum(r.created for r in results) == 1

    doc_id = results[0].document_id
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, doc_id)
        assert doc is not None and doc.status == "done"
        assert session.scalar(select(func.count()).where(Document.sha256 == doc.sha256)) == 1
        numbers = session.scalars(select(Page.number).where(Page.document_id == doc_id)).all()
        assert sorted(numbers) == [1, 2]
        lines = session.scalar(
            select(func.count()).select_from(Line).join(Page).where(Page.document_id == doc_id)
        )
        assert lines == 2  # one line per page: no page was written twice
