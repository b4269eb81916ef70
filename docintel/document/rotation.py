"""Page orientation: exact point mapping between an image and its quarter-turn rotations.

Pure functions (no model, no numpy; PIL only for the lossless image turn), so the
reading order code can use them too and the mappings can be property-tested.

Conventions:
- Coordinates are continuous pixel coordinates with the origin at the top-left
  corner of the image and y pointing down; a pixel (i, j) covers [i, i+1) x [j, j+1).
  Using continuous coordinates (and not pixel indices) makes a rotation map the
  image rectangle exactly onto the rotated rectangle, with no off-by-one.
- An angle is a counter-clockwise quarter turn in degrees (0, 90, 180, 270), the
  convention of ``PIL.Image.rotate`` and ``Image.Transpose.ROTATE_90``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, cast

from PIL import Image

from docintel.geometry import Polygon

QuarterTurn = Literal[0, 90, 180, 270]
QUARTER_TURNS: tuple[QuarterTurn, ...] = (0, 90, 180, 270)

_PointMap = Callable[[float, float], tuple[float, float]]

_TRANSPOSE = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def normalize_angle(angle: int) -> QuarterTurn:
    """Bring any multiple of 90 degrees into 0..270."""
    if angle % 90:
        raise ValueError(f"only quarter turns are supported, got {angle} degrees")
    return cast(QuarterTurn, angle % 360)


def rotated_size(width: float, height: float, angle: int) -> tuple[float, float]:
    """Size of a width x height image after rotating it counter-clockwise by ``angle``."""
    return (height, width) if normalize_angle(angle) in (90, 270) else (width, height)


def rotate_point(
    x: float, y: float, width: float, height: float, angle: int
) -> tuple[float, float]:
    """Where point (x, y) of a width x height image lands once the image is rotated.

    The rotation is counter-clockwise by ``angle``, exactly what
    ``rotate_image(image, angle)`` does to the pixels.
    """
    a = normalize_angle(angle)
    if a == 0:
        return (x, y)
    if a == 90:
        # Counter-clockwise: the right edge becomes the top edge.
        return (y, width - x)
    if a == 180:
        return (width - x, height - y)
    # 270 counter-clockwise = 90 clockwise: the left edge becomes the top edge.
    return (height - y, x)


def unrotate_point(
    x: float, y: float, width: float, height: float, angle: int
) -> tuple[float, float]:
    """Inverse of :func:`rotate_point`: from the rotated image back to the original.

    ``width`` and ``height`` are those of the ORIGINAL image, so callers never have
    to remember which frame's size to pass.
    """
    a = normalize_angle(angle)
    rw, rh = rotated_size(width, height, a)
    return rotate_point(x, y, rw, rh, normalize_angle(-a))


def rotate_polygon(polygon: Sequence[float], width: float, height: float, angle: int) -> Polygon:
    """Rotate the 4 corners of a polygon; their order (and so its starting corner) is kept.

    A rotation preserves orientation, so a polygon listed clockwise from the text's
    top-left corner stays clockwise from that same (physical) corner.
    """
    return _map_polygon(polygon, lambda px, py: rotate_point(px, py, width, height, angle))


def unrotate_polygon(polygon: Sequence[float], width: float, height: float, angle: int) -> Polygon:
    """Map a polygon found in the rotated image back into the original width x height image."""
    return _map_polygon(polygon, lambda px, py: unrotate_point(px, py, width, height, angle))


def rotate_image(image: Image.Image, angle: int) -> Image.Image:
    """Rotate by a quarter turn without resampling (a lossless transpose)."""
    a = normalize_angle(angle)
    return image if a == 0 else image.transpose(_TRANSPOSE[a])


def reading_angle(polygon: Sequence[float]) -> float:
    """Direction of the text baseline in degrees counter-clockwise (0 = left to right).

    The polygon starts at the text's top-left corner as read, so its first edge runs
    along the text. The y axis points down in images, hence the minus sign.
    """
    dx = polygon[2] - polygon[0]
    dy = polygon[3] - polygon[1]
    return math.degrees(math.atan2(-dy, dx)) % 360.0


def nearest_quarter_turn(angle: float) -> QuarterTurn:
    return normalize_angle(round(angle / 90.0) * 90)


def dominant_quarter_turn(items: Iterable[tuple[float, float]]) -> QuarterTurn:
    """The quarter turn with the largest total weight among (angle, weight) pairs."""
    totals = dict.fromkeys(QUARTER_TURNS, 0.0)
    for angle, weight in items:
        totals[nearest_quarter_turn(angle)] += weight
    return max(QUARTER_TURNS, key=lambda a: (totals[a], a == 0))


def correction_for(vertical: bool, upside_down: bool) -> QuarterTurn:
    """Counter-clockwise turn that makes a page upright, from two observations.

    ``vertical``: most text lines run up/down the image.
    ``upside_down``: the text reads upside down in the crops RapidOCR makes, which are
    cut along the line and, for vertical lines, turned 90 degrees counter-clockwise.
    So a vertical line that reads fine after that turn runs top to bottom (the page
    was turned clockwise), and turning the page counter-clockwise fixes it.
    """
    if vertical:
        return 270 if upside_down else 90
    return 180 if upside_down else 0


def _map_polygon(polygon: Sequence[float], fn: _PointMap) -> Polygon:
    if len(polygon) != 8:
        raise ValueError(f"a polygon has 8 values, got {len(polygon)}")
    out: list[float] = []
    for i in range(0, 8, 2):
        out.extend(fn(polygon[i], polygon[i + 1]))
    return cast(Polygon, tuple(out))
