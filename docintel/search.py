"""Full-text search over page text, for the API and the command line.

On Postgres: the pages' generated ``tsvector`` (English configuration), web
search syntax (``"exact phrase"``, ``-excluded``, ``or``), ranked with
``ts_rank`` and a highlighted ``ts_headline`` snippet. SQLite has no such
index: every word of the query must occur in the page (case-insensitive), hits
come newest document first, and the snippet is cut around the first word.
Matches are wrapped in ``<mark>`` and ``</mark>`` either way.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.orm import Session

from docintel.models import Document, Page

_SNIPPET_CHARS = 80  # either side of the first match, on SQLite
_HEADLINE = "StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=18, MinWords=6"


@dataclass(frozen=True, slots=True)
class Hit:
    document_id: uuid.UUID
    filename: str
    page: int
    snippet: str
    rank: float


@dataclass(frozen=True, slots=True)
class Filters:
    document_id: uuid.UUID | None = None
    source: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def search_pages(
    session: Session, query: str, filters: Filters | None = None, *, limit: int = 20
) -> list[Hit]:
    filters = filters or Filters()
    if not query.strip():
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _postgres(session, query, filters, limit)
    return _sqlite(session, query, filters, limit)


def _conditions(filters: Filters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.document_id is not None:
        conditions.append(Document.id == filters.document_id)
    if filters.source is not None:
        conditions.append(Document.source == filters.source)
    if filters.created_after is not None:
        conditions.append(Document.created_at >= filters.created_after)
    if filters.created_before is not None:
        conditions.append(Document.created_at < filters.created_before)
    return conditions


def _postgres(session: Session, query: str, filters: Filters, limit: int) -> list[Hit]:
    tsquery = func.websearch_to_tsquery(literal_column("'english'"), query)
    rank = func.ts_rank(Page.search_vector, tsquery)
    snippet = func.ts_headline(
        literal_column("'english'"), func.coalesce(Page.text, ""), tsquery, _HEADLINE
    )
    statement = (
        select(Document.id, Document.filename, Page.number, snippet, rank)
        .join(Page, Page.document_id == Document.id)
        .where(Page.search_vector.op("@@")(tsquery), *_conditions(filters))
        .order_by(rank.desc(), Document.created_at.desc(), Page.number)
        .limit(limit)
    )
    rows = session.execute(statement)
    return [Hit(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]


def _sqlite(session: Session, query: str, filters: Filters, limit: int) -> list[Hit]:
    words = [w for w in re.findall(r"\w+", query.lower()) if w]
    if not words:
        return []
    text = func.lower(func.coalesce(Page.text, ""))
    statement = (
        select(Document.id, Document.filename, Page.number, Page.text)
        .join(Page, Page.document_id == Document.id)
        .where(*(text.contains(word, autoescape=True) for word in words), *_conditions(filters))
        .order_by(Document.created_at.desc(), Page.number)
        .limit(limit)
    )
    rows = session.execute(statement)
    return [Hit(r[0], r[1], r[2], _snippet(r[3] or "", words), 1.0) for r in rows]


def _snippet(text: str, words: list[str]) -> str:
    flat = " ".join(text.split())
    lowered = flat.lower()
    first = min((i for i in (lowered.find(w) for w in words) if i >= 0), default=0)
    start, end = max(0, first - _SNIPPET_CHARS), min(len(flat), first + _SNIPPET_CHARS)
    piece = flat[start:end]
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    marked = pattern.sub(lambda m: f"<mark>{m.group(0)}</mark>", piece)
    return ("…" if start else "") + marked + ("…" if end < len(flat) else "")
