"""The shapes everyone speaks: polygons and boxes in page pixels, text lines, regions.

One small module imported by engines, page analysis and stages alike, so that
none of them reaches into another's package for a type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Polygon = tuple[float, float, float, float, float, float, float, float]
"""Four corners x1,y1..x4,y4 in page pixels, clockwise from the top-left of the text."""

BBox = tuple[float, float, float, float]
"""x0, y0, x1, y1 in page pixels, origin top-left."""


@dataclass(frozen=True, slots=True)
class TextLine:
    text: str
    polygon: Polygon
    confidence: float

    @property
    def bbox(self) -> BBox:
        xs = self.polygon[0::2]
        ys = self.polygon[1::2]
        return (min(xs), min(ys), max(xs), max(ys))


RegionKind = Literal["table", "chart"]


@dataclass(frozen=True, slots=True)
class Region:
    """A candidate table or chart area for the extraction stage."""

    kind: RegionKind
    bbox: BBox
    score: float
    label: str = ""
