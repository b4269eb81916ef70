"""Full-text search over page text."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from docintel.api.deps import Db, authorized
from docintel.api.schemas import SearchHit, SearchResults
from docintel.search import Filters, search_pages

router = APIRouter(prefix="/v1", tags=["search"], dependencies=[Depends(authorized)])


@router.get("/search")
def search(
    db: Db,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    document_id: uuid.UUID | None = None,
    source: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> SearchResults:
    """Pages whose text matches ``q`` (web search syntax on Postgres), best first."""
    filters = Filters(document_id, source, created_after, created_before)
    hits = search_pages(db, q, filters, limit=limit)
    return SearchResults(
        query=q,
        hits=[
            SearchHit(
                document_id=h.document_id,
                filename=h.filename,
                page=h.page,
                snippet=h.snippet,
                rank=h.rank,
            )
            for h in hits
        ],
    )
