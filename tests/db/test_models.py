"""Model-level guarantees on the reference database: idempotency keys, cascades, search."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from docintel.models import Document, Extraction, Line, Page
from tests.factories import make_document

pytestmark = pytest.mark.postgres


def test_same_page_cannot_be_inserted_twice(pg_session: Session) -> None:
    doc = make_document(pg_session)
    pg_session.add(Page(document_id=doc.id, number=1))
    pg_session.flush()
    pg_session.add(Page(document_id=doc.id, number=1))
    with pytest.raises(IntegrityError):
        pg_session.flush()


def test_same_sha256_cannot_be_two_documents(pg_session: Session) -> None:
    make_document(pg_session, sha256="a" * 64)
    with pytest.raises(IntegrityError):
        make_document(pg_session, sha256="a" * 64)


def test_same_line_index_cannot_repeat_on_a_page(pg_session: Session) -> None:
    doc = make_document(pg_session)
    page = Page(document_id=doc.id, number=1)
    pg_session.add(page)
    pg_session.flush()
    line = {"text": "x", "polygon": [0] * 8, "confidence": 1.0, "engine": "t"}
    pg_session.add(Line(page_id=page.id, idx=0, **line))
    pg_session.flush()
    pg_session.add(Line(page_id=page.id, idx=0, **line))
    with pytest.raises(IntegrityError):
        pg_session.flush()


def test_deleting_a_document_removes_pages_lines_and_extractions(pg_session: Session) -> None:
    doc = make_document(pg_session)
    page = Page(document_id=doc.id, number=1, text="hello")
    pg_session.add(page)
    pg_session.flush()
    pg_session.add(
        Line(page_id=page.id, idx=0, text="hello", polygon=[0] * 8, confidence=1.0, engine="t")
    )
    pg_session.add(Extraction(page_id=page.id, kind="table", idx=0, bbox=[0, 0, 1, 1], engine="t"))
    pg_session.flush()
    # A bulk DELETE bypasses the ORM, so only the database's ON DELETE CASCADE acts.
    pg_session.execute(Document.__table__.delete().where(Document.id == doc.id))
    # Count this document's rows only: the session database holds other tests' rows.
    assert not pg_session.scalar(select(func.count()).where(Page.id == page.id))
    for model in (Line, Extraction):
        assert not pg_session.scalar(select(func.count()).where(model.page_id == page.id))


def test_full_text_search_finds_a_page_by_a_word(pg_session: Session) -> None:
    doc = make_document(pg_session)
    pg_session.add_all(
        [
            Page(document_id=doc.id, number=1, text="Quarterly invoices from the supplier"),
            Page(document_id=doc.id, number=2, text="Nothing relevant on this page"),
        ]
    )
    pg_session.flush()
    query = func.websearch_to_tsquery("english", "invoice")
    hits = pg_session.scalars(select(Page.number).where(Page.search_vector.op("@@")(query))).all()
    assert hits == [1]
