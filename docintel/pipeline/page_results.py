"""Write what a page yielded: its lines in reading order, its text and Markdown.

Every write goes through the page's lease (``leases.write_held``): the page
row is updated only if this worker still holds it, and its lines and regions
are replaced (delete-then-insert) only then, in the same transaction. Running
a stage twice leaves exactly the same rows; a stale run leaves none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from docintel.document.reading_order import order_lines, page_markdown, page_text
from docintel.errors import DocumentError
from docintel.geometry import Region, TextLine
from docintel.models import Extraction, ExtractionStatus, Line, PageStatus, TextSource
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
    regions: Sequence[Region] = (),
    region_engine: str = "",
    extract_queue: str | None = None,
) -> bool:
    """Write the page's ``lines``; False (nothing written) if the lease was lost.

    With ``regions`` (tables, charts) the page waits for the extraction stage
    (``extract``) on ``extract_queue``, with them stored as candidates; without,
    it is done.
    """
    ordered = order_lines(lines, float(size[0]), float(size[1]))
    done = {
        **(values or {}),
        "text": page_text(ordered),
        "markdown": page_markdown(ordered),
        "text_source": source,
        "engine": engine,
        "status": PageStatus.EXTRACT if regions else PageStatus.DONE,
        "queue": extract_queue if regions else None,
        "error_code": None,
        "error_message": None,
    }
    if regions:
        # A new stage with its own tries, like OCR after rendering.
        done.update(attempts=0, claim_task=None)
    if not write_held(session, lease, page_id, done):
        return False
    write_regions(session, page_id, regions, region_engine)
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
    if lease.status == PageStatus.EXTRACT:
        return give_up_extraction(session, lease, page_id, error)
    failed = {
        **(values or {}),
        "status": PageStatus.FAILED,
        "error_code": error.code,
        "error_message": error.message,
    }
    return write_held(session, lease, page_id, failed)


def give_up_extraction(session: Session, lease: Lease, page_id: int, error: DocumentError) -> bool:
    """A failed extraction never fails the page's text: the page is done, with its
    regions that were not read marked ``failed``."""
    if not write_held(session, lease, page_id, {"status": PageStatus.DONE}):
        return False
    fail_candidates(session, page_id, error)
    return True


def fail_candidates(session: Session, page_id: int, error: DocumentError) -> None:
    session.execute(
        update(Extraction)
        .where(Extraction.page_id == page_id, Extraction.status == ExtractionStatus.CANDIDATE)
        .values(status=ExtractionStatus.FAILED, error=f"{error.code}: {error.message}")
        .execution_options(synchronize_session=False)
    )


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
            status=ExtractionStatus.CANDIDATE,
        )
        for idx, region in enumerate(regions)
    )


def with_timing(timings: dict[str, Any] | None, stage: str, seconds: float) -> dict[str, Any]:
    # A new object, not a mutation: JSON columns only notice a new value.
    return {**(timings or {}), stage: round(seconds, 4)}
