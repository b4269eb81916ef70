"""Ruling lines of a page image: the drawn horizontal and vertical strokes tables use.

Read from pixels, not from PDF vector paths, so born-digital renders and scans
go through the same code. A morphological opening with a long, thin kernel
keeps only strokes longer than any letter's; the kernel length comes from the
text height, so it does not depend on the resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# A stroke must be this many text heights long to be a ruling (letters are shorter).
MIN_HORIZONTAL = 3.0
MIN_VERTICAL = 1.2
# Thicker than this share of the text height, it is a filled block (a shaded row,
# a bar of a chart, a photo's edge), not a line.
MAX_THICKNESS = 0.6


@dataclass(frozen=True, slots=True)
class Segment:
    """A ruling: ``position`` across it (y for horizontal), ``start``..``end`` along it."""

    position: float
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Rulings:
    horizontal: tuple[Segment, ...]
    vertical: tuple[Segment, ...]
    # The masks, kept to ask later whether a stretch of a grid line is drawn.
    h_mask: np.ndarray
    v_mask: np.ndarray

    def drawn(self, vertical: bool, position: float, start: float, end: float) -> float:
        """Share (0..1) of the stretch ``start..end`` at ``position`` covered by a ruling."""
        mask = self.v_mask if vertical else self.h_mask
        limit = mask.shape[1] if vertical else mask.shape[0]
        lo, hi = round(position) - 3, round(position) + 4
        lo, hi = max(lo, 0), min(hi, limit)
        a, b = max(int(start), 0), int(end)
        if hi <= lo or b <= a:
            return 0.0
        band = mask[a:b, lo:hi] if vertical else mask[lo:hi, a:b]
        if band.size == 0:
            return 0.0
        along = band.any(axis=1) if vertical else band.any(axis=0)
        return float(along.mean())


def find_rulings(image: Image.Image, text_height: float) -> Rulings:
    gray = np.asarray(image.convert("L"))
    # Adaptive: scans have uneven paper; a global cut would lose pale rules on them.
    binary = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 25, 12
    )
    # Also the pale rules a local mean hides inside dense ink, and solid dark fills.
    _, dark = cv2.threshold(gray, 159, 255, cv2.THRESH_BINARY_INV)
    binary = np.maximum(binary, dark)
    text_height = max(text_height, 6.0)
    h_len = max(int(MIN_HORIZONTAL * text_height), 12)
    v_len = max(int(MIN_VERTICAL * text_height), 10)
    # Closing along the line first mends rules broken by a scan's noise or dashes.
    h_mask = cv2.morphologyEx(
        binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 1))
    )
    h_mask = cv2.morphologyEx(
        h_mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (h_len, 1))
    )
    v_mask = cv2.morphologyEx(
        binary, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3))
    )
    v_mask = cv2.morphologyEx(
        v_mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, v_len))
    )
    max_thick = max(MAX_THICKNESS * text_height, 4.0)
    horizontal = _segments(h_mask, vertical=False, max_thick=max_thick)
    vertical = _segments(v_mask, vertical=True, max_thick=max_thick)
    return Rulings(tuple(horizontal), tuple(vertical), h_mask > 0, v_mask > 0)


def _segments(mask: np.ndarray, *, vertical: bool, max_thick: float) -> list[Segment]:
    # Outer contours of the (sparse) mask: several times faster than labelling it.
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    found: list[Segment] = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        thickness, (start, length) = (w, (y, h)) if vertical else (h, (x, w))
        if thickness > max_thick:
            # A filled block joined to a line (bars standing on an axis, a shaded
            # header row above its rule): the line is the run of rows (columns)
            # inked from end to end; the rest is the block.
            found += _lines_in_block(mask[y : y + h, x : x + w], x, y, vertical, max_thick)
            continue
        centre = x + w / 2 if vertical else y + h / 2
        found.append(Segment(centre, float(start), float(start + length)))
    found.sort(key=lambda s: (s.position, s.start))
    return found


def _lines_in_block(
    block: np.ndarray, x: int, y: int, vertical: bool, max_thick: float
) -> list[Segment]:
    along_axis = 0 if vertical else 1
    full = (block > 0).mean(axis=along_axis) >= 0.95
    offset, (start, length) = (x, (y, block.shape[0])) if vertical else (y, (x, block.shape[1]))
    found: list[Segment] = []
    run_start = None
    for k, inked in enumerate([*full.tolist(), False]):
        if inked and run_start is None:
            run_start = k
        elif not inked and run_start is not None:
            if k - run_start <= max_thick:
                centre = offset + (run_start + k) / 2
                found.append(Segment(centre, float(start), float(start + length)))
            run_start = None
    return found
