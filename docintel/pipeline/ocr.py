"""OCR stage: claim a batch of rendered pages, recognize them together, write the lines.

Messages are only wake-ups; the database is the queue. Each ``ocr_batch`` task
claims up to a batch of pages waiting for OCR, from any document, so a GPU
stays busy across many small documents. The claim is a lease, renewed while
the batch runs; each page's result is written only if the lease still holds it.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from docintel.document.sources import PIL_DECODE_ERRORS
from docintel.engines.base import EngineError, OcrEngine
from docintel.engines.registry import (
    GPU_ENGINES,
    get_ocr_engine,
    get_region_detector,
    has_region_detector,
)
from docintel.errors import DocumentError, ErrorCode
from docintel.geometry import Region, TextLine
from docintel.models import Page, PageStatus, TextSource
from docintel.pipeline.context import FollowUp, StageContext, ocr_engine_config
from docintel.pipeline.leases import LeaseKeeper, work_waiting
from docintel.pipeline.page import ocr_queue
from docintel.pipeline.page_results import (
    fail_held_page,
    finish_page,
    with_timing,
)
from docintel.pipeline.progress import record_progress
from docintel.pipeline.regions import extract_queue, find_page_regions, regions_wanted
from docintel.settings import Settings
from docintel.storage import BlobNotFound

log = logging.getLogger(__name__)


def ocr_batch(ctx: StageContext) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    config = ocr_engine_config(settings)
    # Loaded (once per process) before claiming: a model that takes longer to load
    # than a lease lasts must not lose the pages it is loaded for.
    try:
        engine = get_ocr_engine(config)
    except EngineError:
        # A configuration no worker can run (an unknown engine, bad options): claimed
        # only to be failed by the task layer, or the pages would wait forever. Other
        # load failures (a driver, memory, a missing file on one host) may be this
        # worker's alone: the pages wait for another worker, or for the fix.
        ctx.claim_batch(PageStatus.OCR, ocr_batch_size(settings))
        raise
    lease = ctx.claim_batch(PageStatus.OCR, ocr_batch_size(settings))
    if lease is None:
        return []
    claimed = list(
        session.scalars(select(Page).where(Page.id.in_(lease.page_ids)).order_by(Page.id))
    )
    wanted = {p.id: regions_wanted(settings, p.document.options) for p in claimed}
    follow_ups = [
        FollowUp("docintel.finalize", (str(doc_id),)) for doc_id in {p.document_id for p in claimed}
    ]
    if work_waiting(session, PageStatus.OCR):
        # Wake-ups are only hints, and one lost (a worker killed between taking the
        # message and claiming) would strand a page until the sweeper's timeout. A
        # batch that found work and sees more waiting passes the baton on.
        follow_ups.append(FollowUp("docintel.ocr_batch", (), queue=ocr_queue(settings.ocr_engine)))
    # Read-only from here, and no transaction open over the slow part.
    session.expunge_all()
    session.commit()

    with LeaseKeeper(settings, lease):
        outcomes = _read_pages(ctx, engine, claimed, wanted)

    extracting = False
    for page, outcome in zip(claimed, outcomes, strict=True):
        if isinstance(outcome, DocumentError):
            fail_held_page(session, lease, page.id, outcome)
            continue
        lines, found, seconds = outcome
        values = {"timings": with_timing(page.timings, "ocr", seconds)}
        if found is not None:
            values["timings"] = with_timing(values["timings"], "detect", found.seconds)
        regions = found.regions if found is not None else []
        if (
            finish_page(
                session,
                lease,
                page.id,
                lines,
                size=(page.width or 0, page.height or 0),
                source=TextSource.OCR,
                engine=config.name,
                values=values,
                regions=regions,
                region_engine=found.engine if found is not None else "",
            )
            and regions
        ):
            extracting = True
    if extracting:
        follow_ups.append(FollowUp("docintel.extract_batch", (), queue=extract_queue(settings)))
    _record_progress(session, claimed)
    return follow_ups


@dataclass(frozen=True, slots=True)
class _Found:
    """Regions found on one page, by which detector, in how long (a share of a batch)."""

    regions: list[Region]
    engine: str
    seconds: float


_Outcome = tuple[list[TextLine], _Found | None, float] | DocumentError


def _read_pages(
    ctx: StageContext, engine: OcrEngine, pages: Sequence[Page], wanted: dict[int, bool]
) -> list[_Outcome]:
    """Recognize (and detect regions on) the pages that load; a failure costs one page."""
    # A page whose image is gone or unreadable fails alone: the batch holds pages
    # of other documents, which must not fail (or be retried forever) with it.
    outcomes: list[_Outcome] = []
    readable: list[int] = []
    images: list[Image.Image] = []
    for n, page in enumerate(pages):
        loaded = _load_image(ctx, page)
        outcomes.append(loaded if isinstance(loaded, DocumentError) else ([], None, 0.0))
        if not isinstance(loaded, DocumentError):
            readable.append(n)
            images.append(loaded)
    if not images:
        return outcomes

    started = time.perf_counter()
    results = _recognize_isolating_failures(engine, images)
    ctx.injected_delay("ocr")
    per_page = (time.perf_counter() - started) / len(images)
    detect = [k for k, n in enumerate(readable) if wanted.get(pages[n].id, False)]
    found = _find_regions(ctx, [images[k] for k in detect], [results[k] for k in detect])
    regions = dict(zip(detect, found, strict=True))
    for k, (n, result) in enumerate(zip(readable, results, strict=True)):
        if isinstance(result, DocumentError):
            outcomes[n] = result
        else:
            outcomes[n] = (list(result), regions.get(k), per_page)
    return outcomes


def _record_progress(session: Session, pages: Sequence[Page]) -> None:
    # In a fixed order: two batches spanning the same documents lock their job rows
    # in the same order and cannot deadlock.
    for document_id in sorted({page.document_id for page in pages}):
        record_progress(session, document_id)


def ocr_batch_size(settings: Settings) -> int:
    """Pages one ``ocr_batch`` task claims: a GPU batches them, a CPU engine takes one."""
    return settings.gpu_batch_pages if settings.ocr_engine in GPU_ENGINES else 1


def _find_regions(
    ctx: StageContext,
    images: Sequence[Image.Image],
    lines: Sequence[list[TextLine] | DocumentError],
) -> list[_Found | None]:
    """Tables and charts: the OCR model's detector if it has one, else the CPU finder.

    A failure costs only the regions (None): the pages keep their text.
    """
    if not images:
        return []
    config = ocr_engine_config(ctx.settings)
    started = time.perf_counter()
    if has_region_detector(config.name):
        try:
            detected = get_region_detector(config).detect(images)
        except Exception:
            log.exception("region detection failed; pages keep their text without regions")
            return [None] * len(images)
        share = (time.perf_counter() - started) / len(images)
        return [_Found(list(r), config.name, share) for r in detected]
    found: list[_Found | None] = []
    for image, page_lines in zip(images, lines, strict=True):
        started = time.perf_counter()
        regions = (
            None
            if isinstance(page_lines, DocumentError)
            else find_page_regions(image, page_lines, exact_boxes=False)
        )
        seconds = time.perf_counter() - started
        found.append(None if regions is None else _Found(regions, "cpu-finder", seconds))
    return found


def _load_image(ctx: StageContext, page: Page) -> Image.Image | DocumentError:
    """The stored page image, or the error that fails this page (an outage propagates)."""
    if not page.image_key:
        return DocumentError(ErrorCode.INTERNAL, "the page has no stored image")
    try:
        data = ctx.store.get_bytes(page.image_key)
    except BlobNotFound:
        return DocumentError(
            ErrorCode.INTERNAL, f"the page image {page.image_key} is missing from the blob store"
        )
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except PIL_DECODE_ERRORS:
        return DocumentError(ErrorCode.RENDER_FAILED, "the stored page image cannot be decoded")
    return image


def _recognize_isolating_failures(
    engine: OcrEngine, images: Sequence[Image.Image]
) -> list[list[TextLine] | DocumentError]:
    """One batch call; if it fails, page by page, so one bad page fails alone."""
    try:
        return list(engine.recognize(images))
    except Exception as error:
        if len(images) == 1:
            log.exception("OCR failed")
            return [_ocr_error(error)]
    results: list[list[TextLine] | DocumentError] = []
    for image in images:
        try:
            results.append(engine.recognize([image])[0])
        except Exception as error:
            log.exception("OCR failed on one page of a batch")
            results.append(_ocr_error(error))
    return results


def _ocr_error(error: Exception) -> DocumentError:
    detail = f"{type(error).__name__}: {error}"[:500]
    return DocumentError(ErrorCode.OCR_FAILED, f"the OCR engine failed on this page ({detail})")
