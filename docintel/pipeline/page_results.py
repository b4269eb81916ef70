"""Write what a page yielded: its lines in reading order, its text and Markdown.

Every write goes through the page's lease (``leases.write_held``): the page
row is updated only if this worker still holds it, and its lines and regions
are replaced (delete-then-insert) only then, in the same transaction. Running
a stage twice leaves exactly the same rows; a stale run leaves none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from docintel.document.reading_order import order_lines, page_markdown, page_text
from docintel.errors import DocumentError
from docintel.geometry import Region, TextLine
from docintel.models import Extraction, Line, PageStatus, TextSource
from docintel.pipeline.leases import Lease, write_held


def finish_page(
    session: Session,
    lease: Lease,
    page_id: int,
    lines: Sequence[TextLine],
    *,
    size: tuple[int, int],
    source: TextSource,
    engine: str,
    values: dict[str, Any] | None = None,
) -> bool:
    """Mark the page done with ``lines``; False (nothing written) if the lease was lost."""
    ordered = order_lines(lines, float(size[0]), float(size[1]))
    done = {
        **(values or {}),
        "text": page_text(ordered),
        "markdown": page_markdown(ordered),
        "text_source": source,
        "status": PageStatus.DONE,
        "error_code": None,
        "error_message": None,
    }
    if not write_held(session, lease, page_id, done):
        return False
    session.execute(delete(Line).where(Line.page_id == page_id))
    session.add_all(
        Line(
            page_id=page_id,
            idx=idx,
            text=line.text,
            polygon=[round(v, 2) for v in line.polygon],
            confidence=round(float(line.confidence), 4),
            engine=engine,
        )
        for idx, line in enumerate(ordered)
    )
    return True


def fail_held_page(
    session: Session,
    lease: Lease,
    page_id: int,
    error: DocumentError,
    values: dict[str, Any] | None = None,
) -> bool:
    failed = {
        **(values or {}),
        "status": PageStatus.FAILED,
        "error_code": error.code,
        "error_message": error.message,
    }
    return write_held(session, lease, page_id, failed)


def write_regions(session: Session, page_id: int, regions: Sequence[Region], engine: str) -> None:
    """Candidate table/chart regions for the extraction stage (replaces earlier ones).

    Call only after the page's own fenced write matched.
    """
    session.execute(delete(Extraction).where(Extraction.page_id == page_id))
    session.add_all(
        Extraction(
            page_id=page_id,
            kind=region.kind,
            idx=idx,
            bbox=[round(v, 2) for v in region.bbox],
            score=region.score,
            engine=engine,
            status="candidate",
        )
        for idx, region in enumerate(regions)
    )


def with_timing(timings: dict[str, Any] | None, stage: str, seconds: float) -> dict[str, Any]:
    # A new object, not a mutation: JSON columns only notice a new value.
    return {**(timings or {}), stage: round(seconds, 4)}
