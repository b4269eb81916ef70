"""Page ranges as people write them: ``1-3,7,10-`` (an open end runs to the last page)."""

from __future__ import annotations

import re

_PART = re.compile(r"^\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?$")


def parse_page_range(text: str) -> list[tuple[int, int | None]]:
    """``(first, last)`` pairs, ``last`` None for an open end; ValueError for nonsense."""
    spans: list[tuple[int, int | None]] = []
    for part in text.split(","):
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"{part.strip()!r} is not a page or a range like 3-7 or 10-")
        first = int(match[1])
        last = None if match[2] and not match[3] else int(match[3] or first)
        if first < 1 or (last is not None and last < first):
            raise ValueError(f"{part.strip()!r}: pages count from 1, and a range runs upwards")
        spans.append((first, last))
    return spans


def select_pages(text: str, page_count: int) -> list[int]:
    """The page numbers of the document that the range names, in order, each once."""
    wanted: set[int] = set()
    for first, last in parse_page_range(text):
        wanted.update(range(first, min(page_count, last or page_count) + 1))
    return sorted(wanted)
