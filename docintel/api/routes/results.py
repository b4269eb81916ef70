"""What a document yielded: the output contract, Markdown, pages, page images, tables, charts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from docintel.api.deps import AppSettings, Db, PageNumber, authorized
from docintel.api.problems import Problem
from docintel.models import Document, Page
from docintel.output import document_json, document_markdown, load_document, page_json

router = APIRouter(prefix="/v1/documents", tags=["results"], dependencies=[Depends(authorized)])


def _document(db: Session, document_id: uuid.UUID) -> Document:
    doc = load_document(db, document_id)
    if doc is None:
        raise Problem(404, "not found", f"no document {document_id}")
    return doc


@router.get("/{document_id}")
def get_document(document_id: uuid.UUID, db: Db) -> dict[str, Any]:
    """The document in the output contract (README, "Output contract")."""
    return document_json(_document(db, document_id))


@router.get("/{document_id}/markdown", response_class=PlainTextResponse)
def get_markdown(document_id: uuid.UUID, db: Db) -> str:
    return document_markdown(_document(db, document_id))


@router.get("/{document_id}/pages/{number}")
def get_page(document_id: uuid.UUID, number: PageNumber, db: Db) -> dict[str, Any]:
    # One page's rows, not the whole document's.
    page = db.scalar(
        select(Page)
        .where(Page.document_id == document_id, Page.number == number)
        .options(selectinload(Page.lines), selectinload(Page.extractions))
    )
    if page is None:
        raise Problem(404, "not found", f"document {document_id} has no page {number}")
    return page_json(page)


@router.get("/{document_id}/pages/{number}/image", response_class=StreamingResponse)
def get_page_image(
    document_id: uuid.UUID, number: PageNumber, db: Db, settings: AppSettings
) -> StreamingResponse:
    key = db.scalar(
        select(Page.image_key).where(Page.document_id == document_id, Page.number == number)
    )
    if key is None:
        raise Problem(404, "not found", f"no image of page {number} of {document_id}")
    from docintel.pipeline.context import store_for

    handle = store_for(settings).open(key)
    return StreamingResponse(_chunks(handle), media_type="image/png")


@router.get("/{document_id}/tables")
def get_tables(document_id: uuid.UUID, db: Db) -> list[dict[str, Any]]:
    pages = document_json(_document(db, document_id))["pages"]
    return [{"page": p["number"], **t} for p in pages for t in p["tables"]]


@router.get("/{document_id}/charts")
def get_charts(document_id: uuid.UUID, db: Db) -> list[dict[str, Any]]:
    pages = document_json(_document(db, document_id))["pages"]
    return [{"page": p["number"], **c} for p in pages for c in p["charts"]]


def _chunks(handle: Any, size: int = 64 * 1024) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(size):
            yield chunk
