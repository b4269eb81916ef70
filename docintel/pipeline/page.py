"""Page stage: render one page, store its image, read its text layer or send it to OCR.

Born-digital pages with a real text layer end here; that skip is where most
of the time on digital documents is saved. The page is claimed under a lease
first; the slow part runs with no transaction open while a heartbeat renews
the lease; the result is written only if the lease still holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from docintel.document.render import encode_png, render_page
from docintel.document.textlayer import extract_text_lines, page_image_coverage, text_layer_quality
from docintel.errors import DocumentError
from docintel.geometry import Region, TextLine
from docintel.models import Document, Page, PageStatus, TextSource
from docintel.passwords import document_password
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.leases import LeaseKeeper, write_held
from docintel.pipeline.originals import local_original
from docintel.pipeline.page_results import fail_held_page, finish_page, with_timing
from docintel.pipeline.progress import record_progress
from docintel.pipeline.regions import find_page_regions, regions_wanted
from docintel.pipeline.routing import engine_queue, extract_queue, ocr_engine_for
from docintel.pipeline.split import render_dpi
from docintel.storage import page_image_key

PDF = "application/pdf"
TEXT_LAYER_ENGINE = "pdf-text-layer"


@dataclass(slots=True)
class _Rendered:
    """What rendering and reading one page produced, before it is written."""

    values: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    lines: list[TextLine] | None = None  # None: the page needs OCR
    regions: list[Region] = field(default_factory=list)  # tables and charts found


def process_page(ctx: StageContext, page_id: int) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    lease = ctx.claim([page_id], PageStatus.PENDING)
    if lease is None:
        return []  # done already, held by a live worker, or its document stopped
    page = session.get(Page, page_id, populate_existing=True)
    if page is None:
        return []
    doc = page.document
    # Read-only from here: nothing of the page may reach the database unfenced, and
    # no transaction stays open (idle) over the slow part.
    session.expunge_all()
    session.commit()

    finished = [FollowUp("docintel.finalize", (str(doc.id),))]
    try:
        with LeaseKeeper(settings, lease):
            rendered = _render_and_read(ctx, doc, page)
    except DocumentError as error:
        # Written after the heartbeat stopped: a renewal must not wait on our row lock.
        if fail_held_page(session, lease, page_id, error):
            record_progress(session, doc.id)
            return finished
        return []

    if rendered.lines is not None:
        source = TextSource.NATIVE
        queue = extract_queue(settings, doc.options, [r.kind for r in rendered.regions])
        if not finish_page(
            session,
            lease,
            page_id,
            rendered.lines,
            size=rendered.size,
            source=source,
            engine=TEXT_LAYER_ENGINE,
            values=rendered.values,
            regions=rendered.regions,
            region_engine="cpu-finder",
            extract_queue=queue,
        ):
            return []
        if rendered.regions:
            return [extract_wake_up(queue)]
        record_progress(session, doc.id)
        return finished

    # Free for an OCR worker to claim. OCR is a new stage with its own tries: renders
    # that crashed before must not count against it.
    queue = engine_queue(ocr_engine_for(settings, doc.options))
    waiting = {
        **rendered.values,
        "status": PageStatus.OCR,
        "queue": queue,
        "attempts": 0,
        "claim_task": None,
    }
    if not write_held(session, lease, page_id, waiting):
        return []
    return [ocr_wake_up(queue)]


def ocr_wake_up(queue: str) -> FollowUp:
    """An ``ocr_batch`` message: it claims up to a batch of the pages waiting on ``queue``."""
    return FollowUp("docintel.ocr_batch", (queue,), queue=queue)


def extract_wake_up(queue: str) -> FollowUp:
    return FollowUp("docintel.extract_batch", (queue,), queue=queue)


def _render_and_read(ctx: StageContext, doc: Document, page: Page) -> _Rendered:
    """Render and store the page image; read the text layer unless OCR is needed."""
    settings = ctx.settings
    path = local_original(ctx, doc)
    dpi = render_dpi(doc, settings.render_dpi)
    password = document_password(settings, doc.options)

    started = time.perf_counter()
    rendered = render_page(
        path,
        doc.media_type,
        page.number,
        dpi,
        password=password,
        max_page_pixels=settings.max_page_pixels,
    )
    image = rendered.image
    key = page_image_key(doc.sha256, page.number, rendered.dpi)
    ctx.store.put_bytes(key, encode_png(image))
    ctx.injected_delay("render", page.number)
    timings = with_timing(page.timings, "render", time.perf_counter() - started)
    result = _Rendered(size=(image.width, image.height))
    result.values = {
        "image_key": key,
        "width": image.width,
        "height": image.height,
        "dpi": rendered.dpi,
        "timings": timings,
    }

    ocr_mode = doc.options.get("ocr_mode") or settings.ocr_mode
    if ocr_mode == "always":
        return result
    if doc.media_type != PDF:
        if ocr_mode == "never":  # an image has no text layer: the page is done, empty
            result.lines = []
        return result

    started = time.perf_counter()
    lines = extract_text_lines(path, page.number, rendered.dpi, password)
    use_layer = ocr_mode == "never"
    if not use_layer:
        verdict = text_layer_quality(
            lines, image.width * image.height, page_image_coverage(path, page.number, password)
        )
        use_layer = verdict.use_text_layer
    result.values["timings"] = with_timing(timings, "text_layer", time.perf_counter() - started)
    if use_layer:
        result.lines = list(lines)
        if regions_wanted(settings, doc.options):
            started = time.perf_counter()
            result.regions = find_page_regions(image, result.lines, exact_boxes=True) or []
            result.values["timings"] = with_timing(
                result.values["timings"], "detect", time.perf_counter() - started
            )
    return result
