"""The output contract: one JSON shape for the CLI and the API, plus a Markdown view."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from docintel.models import Document, Extraction, Page


def _value(enum_or_none: Any) -> Any:
    return getattr(enum_or_none, "value", enum_or_none)


def load_document(session: Session, document_id: uuid.UUID) -> Document | None:
    return session.scalar(
        select(Document)
        .where(Document.id == document_id)
        .options(
            selectinload(Document.pages).selectinload(Page.lines),
            selectinload(Document.pages).selectinload(Page.extractions),
        )
    )


def document_json(doc: Document) -> dict[str, Any]:
    return {
        "document": {
            "id": str(doc.id),
            "filename": doc.filename,
            "sha256": doc.sha256,
            "media_type": doc.media_type,
            "page_count": doc.page_count,
            "status": _value(doc.status),
            "error": _error(doc.error_code, doc.error_message),
            "source": doc.source,
            "created_at": doc.created_at.isoformat() if doc.created_at else None,
            "finished_at": doc.finished_at.isoformat() if doc.finished_at else None,
        },
        "pages": [page_json(page) for page in doc.pages],
    }


def _error(code: str | None, message: str | None) -> dict[str, str] | None:
    if not code:
        return None
    return {"code": code, "message": message or ""}


def page_json(page: Page) -> dict[str, Any]:
    tables = [e for e in page.extractions if e.kind == "table"]
    charts = [e for e in page.extractions if e.kind == "chart"]
    return {
        "number": page.number,
        "width": page.width,
        "height": page.height,
        "dpi": page.dpi,
        "text_source": _value(page.text_source),
        "status": _value(page.status),
        "error": _error(page.error_code, page.error_message),
        "text": page.text or "",
        "markdown": page.markdown or "",
        "lines": [
            {"text": line.text, "polygon": line.polygon, "confidence": line.confidence}
            for line in page.lines
        ],
        "tables": [_table_json(t) for t in tables],
        "charts": [_chart_json(c) for c in charts],
        "timings": page.timings or {},
    }


def _table_json(table: Extraction) -> dict[str, Any]:
    data = table.data or {}
    return {
        "bbox": table.bbox,
        "markdown": table.markdown or "",
        "rows": data.get("rows", []),
        "cells": data.get("cells", []),
        "header_rows": data.get("header_rows", 0),
        "engine": table.engine,
        "model": table.model,
        "prompt_version": table.prompt_version,
        "status": table.status,
        "error": table.error,
    }


def _chart_json(chart: Extraction) -> dict[str, Any]:
    data = dict(chart.data or {})
    title = data.pop("title", None) if chart.status != "done" else data.get("title")
    return {
        "bbox": chart.bbox,
        "title": title,
        # The chart schema (docintel.document.charts) once an engine read it.
        "data": data if chart.status == "done" else None,
        "engine": chart.engine,
        "model": chart.model,
        "prompt_version": chart.prompt_version,
        "status": chart.status,
        "error": chart.error,
    }


def document_markdown(doc: Document) -> str:
    parts = [f"<!-- {doc.filename} · {doc.page_count or 0} pages · {_value(doc.status)} -->"]
    for page in doc.pages:
        parts.append(f"<!-- page {page.number} -->")
        if page.error_code:
            parts.append(f"<!-- page failed: {page.error_code}: {page.error_message} -->")
        parts.append(page.markdown or "")
    return "\n\n".join(parts).rstrip() + "\n"
