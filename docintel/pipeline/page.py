"""Page stage: render one page, store its image, read its text layer or send it to OCR.

Born-digital pages with a real text layer end here; that skip is where most
of the time on digital documents is saved.
"""

from __future__ import annotations

import time

from docintel.engines.registry import GPU_ENGINES
from docintel.models import Document, DocumentStatus, Page, PageStatus, TextSource
from docintel.pipeline.claims import claim
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.errors import DocumentError
from docintel.pipeline.originals import local_original
from docintel.pipeline.page_results import add_timing, fail_page, write_page_lines
from docintel.pipeline.progress import record_progress
from docintel.pipeline.render import encode_png, render_page
from docintel.pipeline.split import render_dpi
from docintel.pipeline.textlayer import extract_text_lines, page_image_coverage, text_layer_quality
from docintel.storage import page_image_key

PDF = "application/pdf"
TEXT_LAYER_ENGINE = "pdf-text-layer"


def process_page(ctx: StageContext, page_id: int) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    if not claim(session, [page_id], PageStatus.PENDING, settings.stuck_after_s):
        return []  # done already, or another worker is on it
    page = session.get(Page, page_id, populate_existing=True)
    if page is None:
        return []
    doc = page.document
    if doc.status != DocumentStatus.PROCESSING:
        return []
    finished = [FollowUp("docintel.finalize", (str(doc.id),))]
    try:
        use_ocr = _render_and_read(ctx, doc, page)
    except DocumentError as error:
        fail_page(page, error)
        record_progress(session, doc.id)
        return finished
    if not use_ocr:
        record_progress(session, doc.id)
        return finished
    page.status = PageStatus.OCR
    page.claimed_at = None  # free for an OCR worker to claim
    # OCR is a new stage with its own tries: renders that crashed before must
    # not count against it (the sweeper fails a page after max_page_attempts).
    page.attempts = 0
    return [FollowUp("docintel.ocr_batch", (), queue=ocr_queue(settings.ocr_engine))]


def ocr_queue(engine_name: str) -> str:
    return "gpu" if engine_name in GPU_ENGINES else "cpu"


def _render_and_read(ctx: StageContext, doc: Document, page: Page) -> bool:
    """Render and store the page image; write text-layer lines. True if OCR is needed."""
    settings = ctx.settings
    path = local_original(ctx, doc)
    dpi = render_dpi(doc, settings.render_dpi)

    started = time.perf_counter()
    rendered = render_page(
        path, doc.media_type, page.number, dpi, max_page_pixels=settings.max_page_pixels
    )
    image = rendered.image
    key = page_image_key(doc.sha256, page.number, rendered.dpi)
    ctx.store.put_bytes(key, encode_png(image))
    page.image_key, page.width, page.height, page.dpi = key, image.width, image.height, rendered.dpi
    add_timing(page, "render", time.perf_counter() - started)

    ocr_mode = doc.options.get("ocr_mode") or settings.ocr_mode
    if ocr_mode == "always":
        return True
    if doc.media_type != PDF:
        if ocr_mode == "never":  # an image has no text layer: the page is done, empty
            write_page_lines(ctx.session, page, [], TextSource.NATIVE, TEXT_LAYER_ENGINE)
            return False
        return True

    started = time.perf_counter()
    lines = extract_text_lines(path, page.number, rendered.dpi)
    use_layer = ocr_mode == "never"
    if not use_layer:
        verdict = text_layer_quality(
            lines, image.width * image.height, page_image_coverage(path, page.number)
        )
        use_layer = verdict.use_text_layer
    add_timing(page, "text_layer", time.perf_counter() - started)
    if use_layer:
        write_page_lines(ctx.session, page, lines, TextSource.NATIVE, TEXT_LAYER_ENGINE)
    return not use_layer
