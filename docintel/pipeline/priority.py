"""Which queued work runs first when the workers are busy: 0 first, 9 last.

A queue in arrival order makes a one-page file wait behind every page of a
thousand-page one submitted a moment earlier. Instead, work that finishes
what was begun goes first (OCR batches and finalizing release page images and
complete documents), then starting new documents, then pages by their number
within their document: every document's first pages come before any
document's late pages, so small documents finish early and big ones show
their first results soon. Within one level the order is arrival.
"""

from __future__ import annotations

FINISHING = 0  # ocr_batch, finalize
STARTING = 1  # split
FIRST_PAGES = 2  # pages 1-16 of any document
LAST = 9
PAGES_PER_LEVEL = 16

TASK_PRIORITY = {
    "docintel.ocr_batch": FINISHING,
    "docintel.extract_batch": FINISHING,
    "docintel.finalize": FINISHING,
    "docintel.split": STARTING,
}


def page_priority(number: int) -> int:
    """Priority of rendering page ``number`` (1-based) of a document."""
    return min(LAST, FIRST_PAGES + max(0, number - 1) // PAGES_PER_LEVEL)
