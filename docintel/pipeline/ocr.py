"""OCR stage: claim a batch of rendered pages, recognize them together, write the lines.

Messages are only wake-ups; the database is the queue. Each ``ocr_batch`` task
claims up to a batch of the pages waiting for OCR on its queue, from any
document, so a GPU stays busy across many small documents; pages whose
documents chose different engines are read by each engine in turn. The claim
is a lease, renewed while the batch runs; each page's result is written only
if the lease still holds it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from docintel.document.sources import PIL_DECODE_ERRORS
from docintel.engines.base import EngineError, OcrEngine
from docintel.engines.registry import get_ocr_engine, get_region_detector, has_region_detector
from docintel.errors import DocumentError, ErrorCode, error_detail
from docintel.geometry import Region, TextLine
from docintel.models import Page, PageStatus, TextSource
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.leases import LeaseKeeper, NotLoaded, leave_to_lapse, work_waiting
from docintel.pipeline.page import extract_wake_up, ocr_wake_up
from docintel.pipeline.page_results import (
    fail_held_page,
    finish_page,
    with_timing,
)
from docintel.pipeline.progress import record_progress
from docintel.pipeline.regions import find_page_regions, regions_wanted
from docintel.pipeline.routing import (
    default_queue,
    engine_queue,
    extract_queue,
    ocr_engine_config,
    ocr_engine_for,
)
from docintel.storage import BlobNotFound

log = logging.getLogger(__name__)


def ocr_batch(ctx: StageContext, queue: str | None = None) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    queue = queue or default_queue(settings, PageStatus.OCR)  # a message of an older version
    if engine_queue(settings.ocr_engine) == queue:
        # The configured engine is loaded (once per process) before claiming: a model
        # that takes longer to load than a lease lasts must not lose the pages it is
        # loaded for. Engines a document chose load under the lease's heartbeat.
        # Other load failures (a driver, memory, a missing file on one host) may be
        # this worker's alone: they propagate, and the pages wait for another worker.
        with contextlib.suppress(EngineError):  # no worker can run it: its pages fail below
            get_ocr_engine(ocr_engine_config(settings))
    lease = ctx.claim_batch(PageStatus.OCR, queue)
    if lease is None:
        return []
    claimed = list(
        session.scalars(
            select(Page)
            .where(Page.id.in_(lease.page_ids))
            .options(selectinload(Page.document))  # their options: one query, not one a page
            .order_by(Page.id)
        )
    )
    options = {p.id: dict(p.document.options) for p in claimed}
    follow_ups = [
        FollowUp("docintel.finalize", (str(doc_id),)) for doc_id in {p.document_id for p in claimed}
    ]
    if work_waiting(session, PageStatus.OCR, ctx.queue_filter(PageStatus.OCR, queue)):
        # Wake-ups are only hints, and one lost (a worker killed between taking the
        # message and claiming) would strand a page until the sweeper's timeout. A
        # batch that found work and sees more waiting passes the baton on.
        follow_ups.append(ocr_wake_up(queue))
    # Read-only from here, and no transaction open over the slow part.
    session.expunge_all()
    session.commit()

    by_engine: dict[str, list[Page]] = {}
    for page in claimed:
        by_engine.setdefault(ocr_engine_for(settings, options[page.id]), []).append(page)
    outcomes: dict[int, _Outcome | NotLoaded] = {}
    with LeaseKeeper(settings, lease):
        for name, pages in by_engine.items():
            wanted = {p.id: regions_wanted(settings, options[p.id]) for p in pages}
            outcomes.update(_read_with(ctx, name, pages, wanted))

    extract_queues: set[str] = set()
    for page in claimed:
        outcome = outcomes[page.id]
        if isinstance(outcome, NotLoaded):
            continue  # its engine cannot load here: left to lapse below
        if isinstance(outcome, DocumentError):
            fail_held_page(session, lease, page.id, outcome)
            continue
        lines, found, seconds, name = outcome
        values = {"timings": with_timing(page.timings, "ocr", seconds)}
        if found is not None:
            values["timings"] = with_timing(values["timings"], "detect", found.seconds)
        regions = found.regions if found is not None else []
        waits_on = extract_queue(settings, options[page.id], [r.kind for r in regions])
        if (
            finish_page(
                session,
                lease,
                page.id,
                lines,
                size=(page.width or 0, page.height or 0),
                source=TextSource.OCR,
                engine=name,
                values=values,
                regions=regions,
                region_engine=found.engine if found is not None else "",
                extract_queue=waits_on,
            )
            and regions
        ):
            extract_queues.add(waits_on)
    notes = {p: o.why for p, o in outcomes.items() if isinstance(o, NotLoaded)}
    leave_to_lapse(session, lease, notes)
    follow_ups.extend(extract_wake_up(q) for q in sorted(extract_queues))
    _record_progress(session, claimed)
    return follow_ups


def _read_with(
    ctx: StageContext, name: str, pages: Sequence[Page], wanted: dict[int, bool]
) -> dict[int, _Outcome | NotLoaded]:
    """The pages read by engine ``name``; ``NotLoaded`` for each if it cannot load here."""
    try:
        engine = get_ocr_engine(ocr_engine_config(ctx.settings, name))
    except EngineError as error:
        failed = DocumentError(ErrorCode.OCR_FAILED, f"the {name} OCR engine cannot run: {error}")
        return {p.id: failed for p in pages}
    except Exception as error:
        # A driver, memory or package this host lacks: another worker may have them.
        log.exception("cannot load the %s OCR engine; its pages go to another worker", name)
        missing = NotLoaded.because(f"the {name} OCR engine", error)
        return {p.id: missing for p in pages}
    outcomes = _read_pages(ctx, engine, name, pages, wanted)
    return {p.id: o for p, o in zip(pages, outcomes, strict=True)}


@dataclass(frozen=True, slots=True)
class _Found:
    """Regions found on one page, by which detector, in how long (a share of a batch)."""

    regions: list[Region]
    engine: str
    seconds: float


# A page's lines, its regions, its share of the batch's seconds, the engine; or its error.
_Outcome = tuple[list[TextLine], _Found | None, float, str] | DocumentError


def _read_pages(
    ctx: StageContext,
    engine: OcrEngine,
    name: str,
    pages: Sequence[Page],
    wanted: dict[int, bool],
) -> list[_Outcome]:
    """Recognize (and detect regions on) the pages that load; a failure costs one page."""
    # A page whose image is gone or unreadable fails alone: the batch holds pages
    # of other documents, which must not fail (or be retried forever) with it.
    outcomes: list[_Outcome] = []
    readable: list[int] = []
    images: list[Image.Image] = []
    for n, page in enumerate(pages):
        loaded = _load_image(ctx, page)
        outcomes.append(loaded if isinstance(loaded, DocumentError) else ([], None, 0.0, name))
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
    found = _find_regions(ctx, name, [images[k] for k in detect], [results[k] for k in detect])
    regions = dict(zip(detect, found, strict=True))
    for k, (n, result) in enumerate(zip(readable, results, strict=True)):
        if isinstance(result, DocumentError):
            outcomes[n] = result
        else:
            outcomes[n] = (list(result), regions.get(k), per_page, name)
    return outcomes


def _record_progress(session: Session, pages: Sequence[Page]) -> None:
    # In a fixed order: two batches spanning the same documents lock their job rows
    # in the same order and cannot deadlock.
    for document_id in sorted({page.document_id for page in pages}):
        record_progress(session, document_id)


def _find_regions(
    ctx: StageContext,
    name: str,
    images: Sequence[Image.Image],
    lines: Sequence[list[TextLine] | DocumentError],
) -> list[_Found | None]:
    """Tables and charts: OCR model ``name``'s detector if it has one, else the CPU finder.

    A failure costs only the regions (None): the pages keep their text.
    """
    if not images:
        return []
    config = ocr_engine_config(ctx.settings, name)
    started = time.perf_counter()
    if has_region_detector(name):
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
    return DocumentError(
        ErrorCode.OCR_FAILED, f"the OCR engine failed on this page ({error_detail(error)})"
    )
