"""The SQL views and function the README's queries use, on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from docintel import migrate
from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, Page, PageStatus


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    url = f"sqlite:///{tmp_path / 'views.db'}"
    migrate.upgrade(url)
    return url


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_page_texts_and_failed_pages(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database(kind, tmp_path, request)
    word = "zq" + uuid.uuid4().hex[:8]
    doc_id = uuid.uuid4()
    with session_scope(url) as session:
        session.add(
            Document(
                id=doc_id,
                sha256=uuid.uuid4().hex * 2,
                filename=f"{word}.pdf",
                media_type="application/pdf",
                size_bytes=10,
                status=DocumentStatus.PARTIAL,
            )
        )
        session.flush()
        session.add_all(
            [
                Page(document_id=doc_id, number=1, status=PageStatus.DONE, text=f"Total {word}"),
                Page(
                    document_id=doc_id,
                    number=2,
                    status=PageStatus.FAILED,
                    error_code="timeout",
                    error_message="the page took too long",
                ),
            ]
        )
    key = doc_id if kind == "postgres" else doc_id.hex
    with session_scope(url) as session:
        page = session.execute(
            text("SELECT text FROM page_texts WHERE filename = :f AND page_number = 1"),
            {"f": f"{word}.pdf"},
        ).scalar_one()
        assert page == f"Total {word}"
        failed = session.execute(
            text(
                "SELECT page_number, error_code, error_message FROM failed_pages"
                " WHERE document_id = :d"
            ),
            {"d": key},
        ).all()
        assert [tuple(r) for r in failed] == [(2, "timeout", "the page took too long")]
        if kind == "postgres":
            hits = session.execute(
                text("SELECT filename, page_number, snippet FROM search_pages(:q)"), {"q": word}
            ).all()
            assert [(h[0], h[1]) for h in hits] == [(f"{word}.pdf", 1)]
            assert f"<mark>{word}</mark>" in hits[0][2]
