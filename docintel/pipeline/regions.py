"""Which regions a page sends to the extraction stage (``routing`` says who reads them).

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
from docintel.geometry import Region, TextLine
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
