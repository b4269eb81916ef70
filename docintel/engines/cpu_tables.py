"""The CPU extraction engine: tables from rulings and text alignment, charts named only.

Needs no model and no GPU, so it is the embedded default. Tables are read by
``docintel.document.table_finder`` from the region's crop and the words inside
it. Chart data needs a vision-language model: charts come back ``no_engine``,
with the title taken from their text, so they are stored and findable.
"""

from __future__ import annotations

from collections.abc import Sequence

from docintel.document.table_reader import read_region
from docintel.engines.base import EngineConfig, RegionInput, RegionResult

NAME = "cpu-tables"


class CpuTableEngine:
    name = NAME

    def extract(self, regions: Sequence[RegionInput]) -> list[RegionResult]:
        return [self._one(region) for region in regions]

    def _one(self, region: RegionInput) -> RegionResult:
        if region.kind != "table":
            return RegionResult("no_engine", title=region_title(region))
        if not region.lines:
            return RegionResult("failed", error="the region holds no text")
        table = read_region(region.image, region.lines, exact_boxes=region.exact_boxes)
        if table is None:
            return RegionResult("failed", error="no rows and columns found in the region")
        return RegionResult("done", table=table)


def region_title(region: RegionInput) -> str | None:
    """The chart's title or caption: its topmost line of text (ties: the tallest)."""
    if not region.lines:
        return None
    top = min(region.lines, key=lambda line: (round(line.bbox[1] / 8), -line.bbox[3]))
    return top.text.strip() or None


def build(config: EngineConfig) -> CpuTableEngine:
    del config  # nothing to configure
    return CpuTableEngine()
