"""Extraction stage: read the tables and charts found on pages into data.

Like OCR, the database is the queue: an ``extract_batch`` task claims pages
waiting in ``extract`` on its queue (one on the CPU, a batch for a GPU model),
crops their regions out of the stored page images, gives each engine the crops
of its regions (the engines their documents chose) with the lines inside them,
and writes each region's result. The page then gets its
text and Markdown again with every table in its place, and is done.

An extraction that fails is recorded on its region (``failed``, the error and
the engine's raw output kept); the page keeps its text and is done all the same.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from docintel.document.reading_order import Block, compose_page
from docintel.document.table_finder import CROP_MARGIN, centre_in, crop_region
from docintel.document.tables import Table
from docintel.engines.base import EngineError, ExtractionEngine, RegionInput, RegionResult
from docintel.engines.registry import NO_EXTRACTION, get_extraction_engine
from docintel.errors import error_detail
from docintel.geometry import BBox, RegionKind, TextLine
from docintel.models import Extraction, ExtractionStatus, Page, PageStatus, TextSource
from docintel.pipeline.context import FollowUp, StageContext
from docintel.pipeline.leases import (
    Lease,
    LeaseKeeper,
    NotLoaded,
    leave_to_lapse,
    work_waiting,
    write_held,
)
from docintel.pipeline.page import extract_wake_up
from docintel.pipeline.page_results import with_timing
from docintel.pipeline.progress import record_progress
from docintel.pipeline.routing import default_queue, extraction_config, extraction_engine_for
from docintel.settings import Settings
from docintel.storage import BlobNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Region:
    extraction_id: int
    kind: RegionKind
    bbox: BBox


@dataclass(frozen=True, slots=True)
class _PageWork:
    """What the stage needs of a page, read before the slow part (no session then)."""

    page_id: int
    document_id: Any
    image_key: str | None
    size: tuple[int, int]
    lines: tuple[TextLine, ...]
    regions: tuple[_Region, ...]
    timings: dict[str, Any]
    text_layer: bool  # the lines are the PDF's own text, with boxes that fit it
    engines: dict[RegionKind, str]  # which engine reads each kind (its document's choice)

    def needs(self) -> set[str]:
        return {self.engines[region.kind] for region in self.regions} - {NO_EXTRACTION}


# An engine ready to run; why it cannot run at all (its regions fail with it); or why
# it cannot load on this worker (its pages go to another).
_Loaded = ExtractionEngine | str | NotLoaded


def extract_batch(ctx: StageContext, queue: str | None = None) -> list[FollowUp]:
    session, settings = ctx.session, ctx.settings
    queue = queue or default_queue(settings, PageStatus.EXTRACT)  # an older version's message
    lease = ctx.claim_batch(PageStatus.EXTRACT, queue)
    if lease is None:
        return []
    work = _read_work(session, settings, lease)
    follow_ups = [FollowUp("docintel.finalize", (str(d),)) for d in {w.document_id for w in work}]
    if work_waiting(session, PageStatus.EXTRACT, ctx.queue_filter(PageStatus.EXTRACT, queue)):
        # Pass the baton, as OCR does: a lost wake-up must not strand a page.
        follow_ups.append(extract_wake_up(queue))
    session.expunge_all()
    session.commit()  # no transaction stays open over the slow part

    with LeaseKeeper(settings, lease):
        # Loaded under the lease's heartbeat: a model slower to load than a lease
        # lasts keeps its pages. Each engine loads once per process (the registry).
        engines = _load(ctx.settings, set().union(*(w.needs() for w in work)))
        not_here = {
            w.page_id: missing[0].why
            for w in work
            if (missing := [e for n in w.needs() if isinstance(e := engines[n], NotLoaded)])
        }
        work = [w for w in work if w.page_id not in not_here]
        started = time.perf_counter()
        results = _extract_pages(ctx, engines, work)
        ctx.injected_delay("extract")
        per_page = (time.perf_counter() - started) / max(len(work), 1)

    # Rows name the engine as it names itself (a "module:factory" target has a name).
    labels = {n: e.name for n, e in engines.items() if not isinstance(e, str | NotLoaded)}
    for page in work:
        _write_page(session, lease, page, results.get(page.page_id, {}), per_page, labels)
    leave_to_lapse(session, lease, not_here)
    for document_id in sorted({w.document_id for w in work}):
        record_progress(session, document_id)
    return follow_ups


def _load(settings: Settings, names: set[str]) -> dict[str, _Loaded]:
    loaded: dict[str, _Loaded] = {}
    for name in sorted(names):
        config = extraction_config(settings, name)
        assert config is not None  # "none" needs no engine
        try:
            loaded[name] = get_extraction_engine(config)
        except EngineError as error:
            loaded[name] = str(error)  # a configuration no worker can run
        except Exception as error:
            log.exception("cannot load the %s extraction engine; its pages go elsewhere", name)
            loaded[name] = NotLoaded.because(f"the {name} extraction engine", error)
    return loaded


def _read_work(session: Session, settings: Settings, lease: Lease) -> list[_PageWork]:
    pages = session.scalars(
        select(Page)
        .where(Page.id.in_(lease.page_ids))
        .options(
            selectinload(Page.lines), selectinload(Page.extractions), selectinload(Page.document)
        )
        .order_by(Page.id)
    )
    work: list[_PageWork] = []
    for page in pages:
        lines = tuple(
            TextLine(line.text, tuple(line.polygon), line.confidence)  # type: ignore[arg-type]
            for line in page.lines
        )
        regions = tuple(
            _Region(e.id, e.kind, tuple(e.bbox))  # type: ignore[arg-type]
            for e in page.extractions
            if e.kind in ("table", "chart")
        )
        work.append(
            _PageWork(
                page.id,
                page.document_id,
                page.image_key,
                (page.width or 0, page.height or 0),
                lines,
                regions,
                dict(page.timings or {}),
                page.text_source == TextSource.NATIVE,
                {
                    kind: extraction_engine_for(settings, page.document.options, kind)
                    for kind in ("table", "chart")
                },
            )
        )
    return work


def _extract_pages(
    ctx: StageContext, engines: dict[str, _Loaded], work: Sequence[_PageWork]
) -> dict[int, dict[int, RegionResult]]:
    """Each page's results by extraction id; every region gets one, whatever fails."""
    results: dict[int, dict[int, RegionResult]] = {}
    batches: dict[str, list[tuple[int, int, RegionInput]]] = {}
    for page in work:
        page_results = results.setdefault(page.page_id, {})
        image = _load_image(ctx, page)
        for region in page.regions:
            name = page.engines[region.kind]
            engine = engines.get(name)
            if name == NO_EXTRACTION:
                page_results[region.extraction_id] = RegionResult(
                    "no_engine", title=_title(page.lines, region.bbox)
                )
                continue
            if isinstance(engine, str):
                page_results[region.extraction_id] = RegionResult("failed", error=engine)
                continue
            if isinstance(image, str):
                page_results[region.extraction_id] = RegionResult("failed", error=image)
                continue
            crop = _crop(image, page.lines, region, page.text_layer)
            if isinstance(crop, str):
                page_results[region.extraction_id] = RegionResult("failed", error=crop)
                continue
            batches.setdefault(name, []).append((page.page_id, region.extraction_id, crop))
    for name, batch in batches.items():
        engine = engines[name]
        assert not isinstance(engine, str | NotLoaded)  # sorted out above
        outputs = _run_isolating_failures(engine, [item for _, _, item in batch])
        for (page_id, extraction_id, _), output in zip(batch, outputs, strict=True):
            results[page_id][extraction_id] = output
    return results


def _run_isolating_failures(
    engine: ExtractionEngine, inputs: Sequence[RegionInput]
) -> list[RegionResult]:
    """One batched call; if it raises, region by region, so one bad region fails alone."""
    try:
        outputs = list(engine.extract(inputs))
        if len(outputs) == len(inputs):
            return outputs
        log.error("%s returned %d results for %d regions", engine.name, len(outputs), len(inputs))
    except Exception:
        if len(inputs) == 1:
            log.exception("extraction failed")
    results: list[RegionResult] = []
    for item in inputs:
        try:
            results.append(engine.extract([item])[0])
        except Exception as error:
            log.exception("extraction failed on one region")
            failed = f"the {engine.name} engine failed ({error_detail(error)})"
            results.append(RegionResult("failed", error=failed))
    return results


def _load_image(ctx: StageContext, page: _PageWork) -> Image.Image | str:
    """The page image, or why it cannot be had (an outage of the store propagates)."""
    if not page.image_key:
        return "the page has no stored image"
    try:
        data = ctx.store.get_bytes(page.image_key)
    except BlobNotFound:
        return f"the page image {page.image_key} is missing from the blob store"
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        return "the stored page image cannot be decoded"
    return image


def _crop(
    image: Image.Image, lines: Sequence[TextLine], region: _Region, text_layer: bool
) -> RegionInput | str:
    cropped = crop_region(image, lines, region.bbox)
    if cropped is None:
        return "the region lies outside the page"
    crop, inside, _ = cropped
    return RegionInput(region.kind, crop, tuple(inside), exact_boxes=text_layer)


def _title(lines: Sequence[TextLine], box: BBox) -> str | None:
    inside = [line for line in lines if centre_in(line, box) and line.text.strip()]
    if not inside:
        return None
    return min(inside, key=lambda line: (line.bbox[1], line.bbox[0])).text.strip()


def _write_page(
    session: Session,
    lease: Lease,
    page: _PageWork,
    results: dict[int, RegionResult],
    seconds: float,
    labels: dict[str, str],
) -> None:
    blocks: list[Block] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for region in page.regions:
        result = results.get(region.extraction_id) or RegionResult(
            "failed", error="no result from the engine"
        )
        values, block = _stored(region, result)
        name = page.engines[region.kind]
        values["engine"] = labels.get(name, name)
        rows.append((region.extraction_id, values))
        if block is not None:
            blocks.append(block)
    text, markdown = compose_page(page.lines, blocks, float(page.size[0]), float(page.size[1]))
    done = {
        "status": PageStatus.DONE,
        "error_message": None,  # a note left by a worker that could not load an engine
        "text": text,
        "markdown": markdown,
        "timings": with_timing(page.timings, "extract", seconds),
    }
    if not write_held(session, lease, page.page_id, done):
        return
    for extraction_id, values in rows:
        session.execute(
            update(Extraction)
            .where(Extraction.id == extraction_id, Extraction.page_id == page.page_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _stored(region: _Region, result: RegionResult) -> tuple[dict[str, Any], Block | None]:
    """The extraction row's new values, and the block the page text shows in its place."""
    values: dict[str, Any] = {
        "status": ExtractionStatus(result.status),
        "error": result.error,
        "model": result.model,
        "prompt_version": result.prompt_version,
        "markdown": None,
        "data": None,
    }
    if result.status == "done" and result.table is not None:
        table = _on_page(result.table, region.bbox)
        values["markdown"] = table.markdown
        values["data"] = table.as_json()
        return values, Block(region.bbox, table.text, table.markdown)
    if result.status == "done" and result.chart is not None:
        values["data"] = result.chart.model_dump(mode="json")
        return values, None
    if result.status == "done":
        values.update(status=ExtractionStatus.FAILED, error="the engine returned no data")
    if result.raw is not None:
        values["data"] = {"raw": result.raw}
    elif result.title is not None:
        values["data"] = {"title": result.title}
    return values, None


def _on_page(table: Table, box: BBox) -> Table:
    """Cell boxes moved from the crop's pixels to the page's."""
    dx = max(int(box[0]) - CROP_MARGIN, 0)
    dy = max(int(box[1]) - CROP_MARGIN, 0)
    cells = tuple(
        replace(c, bbox=(c.bbox[0] + dx, c.bbox[1] + dy, c.bbox[2] + dx, c.bbox[3] + dy))
        if c.bbox
        else c
        for c in table.cells
    )
    return Table(cells, header_rows=table.header_rows, bbox=box, shape=table.shape)
