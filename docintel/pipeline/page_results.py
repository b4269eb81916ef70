"""Write what a page yielded: its lines in reading order, its text and Markdown.

Delete-then-insert inside the caller's transaction: running a stage twice
leaves exactly the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlalchemy.orm import Session

from docintel.engines.base import Region, TextLine
from docintel.models import Extraction, Line, Page, PageStatus, TextSource
from docintel.pipeline.errors import DocumentError
from docintel.pipeline.reading_order import order_lines, page_markdown, page_text


def write_page_lines(
    session: Session, page: Page, lines: Sequence[TextLine], source: TextSource, engine: str
) -> None:
    ordered = order_lines(lines, float(page.width or 0), float(page.height or 0))
    session.execute(delete(Line).where(Line.page_id == page.id))
    session.add_all(
        Line(
            page_id=page.id,
            idx=idx,
            text=line.text,
            polygon=[round(v, 2) for v in line.polygon],
            confidence=round(float(line.confidence), 4),
            engine=engine,
        )
        for idx, line in enumerate(ordered)
    )
    page.text = page_text(ordered)
    page.markdown = page_markdown(ordered)
    page.text_source = source
    page.status = PageStatus.DONE
    page.error_code = page.error_message = None
    page.claimed_at = None


def write_regions(session: Session, page: Page, regions: Sequence[Region], engine: str) -> None:
    """Candidate table/chart regions for the extraction stage (replaces earlier ones)."""
    session.execute(delete(Extraction).where(Extraction.page_id == page.id))
    session.add_all(
        Extraction(
            page_id=page.id,
            kind=region.kind,
            idx=idx,
            bbox=[round(v, 2) for v in region.bbox],
            score=region.score,
            engine=engine,
            status="candidate",
        )
        for idx, region in enumerate(regions)
    )


def fail_page(page: Page, error: DocumentError) -> None:
    page.status = PageStatus.FAILED
    page.error_code = error.code
    page.error_message = error.message
    page.claimed_at = None


def add_timing(page: Page, stage: str, seconds: float) -> None:
    # Reassign, not mutate: JSON columns only notice a new object.
    page.timings = {**(page.timings or {}), stage: round(seconds, 4)}
