"""Which regions a page sends to the extraction stage, and which engine reads them.

Detection runs where a page's lines are made (the page stage for text layers,
the OCR stage for scans), while the page image is still in memory: an OCR
model's own detector where it has one, else the CPU finder (rulings and text
alignment). A page with regions waits in ``extract``; one without is done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from PIL import Image

from docintel.document.table_finder import find_tables
from docintel.engines.base import EngineConfig, frozen_options
from docintel.engines.registry import GPU_ENGINES, NO_EXTRACTION
from docintel.geometry import Region, RegionKind, TextLine
from docintel.settings import Settings

log = logging.getLogger(__name__)


def regions_wanted(settings: Settings, options: dict[str, Any]) -> bool:
    """``DOCINTEL_DETECT_REGIONS``, unless the document says ``tables: false``."""
    return settings.detect_regions and options.get("tables", True) is not False


def find_page_regions(
    image: Image.Image, lines: Sequence[TextLine], *, exact_boxes: bool
) -> list[Region] | None:
    """Tables and charts the CPU finds; None (and a log line) if the finder failed.

    ``exact_boxes``: the lines come from a text layer (their boxes fit the text).
    """
    started = time.perf_counter()
    try:
        regions = find_tables(image, lines, exact_boxes=exact_boxes)
    except Exception:
        # The page keeps its text: regions are extra, never a reason to fail it.
        log.exception("table detection failed; the page keeps its text without tables")
        return None
    log.debug("found %d regions in %.3fs", len(regions), time.perf_counter() - started)
    return regions


def engine_name(settings: Settings, kind: RegionKind) -> str:
    return settings.table_engine if kind == "table" else settings.chart_engine


def extraction_config(settings: Settings, kind: RegionKind) -> EngineConfig | None:
    """The engine config for ``kind``; None when regions of that kind stay unread."""
    name = engine_name(settings, kind)
    if name == NO_EXTRACTION:
        return None
    return EngineConfig(
        name=name,
        model=settings.extract_model if name in GPU_ENGINES else "",
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.extract_batch_size,
        options=frozen_options(settings.extract_options),
    )


def extract_queue(settings: Settings) -> str:
    """``gpu`` when a model engine reads some kind, else ``cpu`` beside rendering."""
    names = {settings.table_engine, settings.chart_engine}
    return "gpu" if names & GPU_ENGINES else "cpu"


def extract_batch_size(settings: Settings) -> int:
    return settings.extract_batch_pages if extract_queue(settings) == "gpu" else 1
