"""A page or crop turned by quarter turns so that most of its text runs left to right."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from docintel.geometry import BBox, Polygon, TextLine


@dataclass(frozen=True, slots=True)
class Upright:
    """A page (or crop) turned by quarter turns so that most of its text runs left to right.

    ``turns`` counter-clockwise quarter turns were applied; ``back`` maps a box of
    the turned image to the original's pixels.
    """

    image: Image.Image
    lines: list[TextLine]
    turns: int
    size: tuple[int, int]  # the original's width and height

    @classmethod
    def of(cls, image: Image.Image, lines: Sequence[TextLine]) -> Upright:
        weights = [0.0, 0.0, 0.0, 0.0]
        for line in lines:
            p = line.polygon
            dx, dy = p[2] - p[0], p[3] - p[1]
            length = math.hypot(dx, dy)
            if length > 0:
                weights[round(math.degrees(math.atan2(dy, dx)) / 90.0) % 4] += length
        turns = max(range(4), key=lambda q: weights[q])
        if weights[turns] <= 0.5 * sum(weights):
            turns = 0  # no clear majority: leave the page as it is
        upright = cls(image, list(lines), 0, (image.width, image.height))
        if turns == 0:
            return upright
        turned = image.transpose(_TRANSPOSE[turns])
        moved = [
            TextLine(ln.text, _turn_polygon(ln.polygon, turns, upright.size), ln.confidence)
            for ln in lines
        ]
        return cls(turned, moved, turns, upright.size)

    def back(self, box: BBox) -> BBox:
        if self.turns == 0:
            return box
        width, height = self.size
        x0, y0, x1, y1 = box
        if self.turns == 1:  # (x, y) -> (y, W - x) was applied
            xs, ys = (width - y0, width - y1), (x0, x1)
        elif self.turns == 2:
            xs, ys = (width - x0, width - x1), (height - y0, height - y1)
        else:  # (x, y) -> (H - y, x) was applied
            xs, ys = (y0, y1), (height - x0, height - x1)
        return (min(xs), min(ys), max(xs), max(ys))


# Text running down the image (quadrant 1) reads upright after a quarter turn
# counter-clockwise, and so on.
_TRANSPOSE = {
    1: Image.Transpose.ROTATE_90,
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_270,
}


def _turn_polygon(polygon: tuple[float, ...], turns: int, size: tuple[int, int]) -> Polygon:
    width, height = size
    out: list[float] = []
    for x, y in zip(polygon[0::2], polygon[1::2], strict=True):
        if turns == 1:
            out += [y, width - x]
        elif turns == 2:
            out += [width - x, height - y]
        else:
            out += [height - y, x]
    return tuple(out)  # type: ignore[return-value]
