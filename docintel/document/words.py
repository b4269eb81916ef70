"""Words with boxes, from the lines engines give, and the rows and runs they form.

Engines give lines (a text layer's segments, an OCR engine's boxes), not words.
Table finding and reading need words: a line running over several cells must
be cut where its cells are. Everything is measured in text heights, so nothing
depends on the resolution.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from docintel.geometry import BBox, TextLine

# Words closer than this many text heights belong to one chunk (a cell's text).
CHUNK_GAP = 0.55


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    # The height of its type, for every threshold in text heights. An OCR box is
    # padded, so its ink says this better than its box when the image is at hand.
    size: float = 0.0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass(frozen=True, slots=True)
class Chunk:
    """Neighbouring words of one text row: the text of one cell, or of a spanning cell."""

    words: tuple[Word, ...]

    @property
    def x0(self) -> float:
        return self.words[0].x0

    @property
    def x1(self) -> float:
        return self.words[-1].x1

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


# -- words and rows -------------------------------------------------------------------


def words_of(lines: Sequence[TextLine], image: Image.Image | None = None) -> list[Word]:
    """Words with boxes, cut from upright lines in proportion to their characters.

    Engines give lines (a text layer segment, an OCR line), not words; character
    widths are not known, so a word's box is estimated from its place in the
    line. With the ``image``, a line whose ink has wide gaps (an OCR line running
    over several cells) is first cut at those gaps, and its words shared out
    among the pieces. A sideways line (a header set vertically over a narrow
    column) stays one word, the size of its box.
    """
    ink = _ink(image) if image is not None else None
    words: list[Word] = []
    for line in lines:
        if not line.text.strip():
            continue
        p = line.polygon
        dx, dy = p[2] - p[0], p[3] - p[1]
        x0, y0, x1, y1 = line.bbox
        if dx <= 0 or abs(dy) > 0.3 * dx:
            words.append(Word(" ".join(line.text.split()), x0, y0, x1, y1))
            continue
        pieces: list[tuple[float, float]] = []
        size = y1 - y0
        if ink is not None:
            # OCR boxes are padded: the ink gives the true extent and type size
            # (ink runs from ascender to descender, about 0.8 of a text line's box).
            tx0, ty0, tx1, ty1 = _tight(ink, line.bbox)
            inked = 1.25 * (ty1 - ty0)
            if 0 < inked < 0.8 * size:  # a padded box (OCR), not a text layer's
                size = inked
            pieces = _ink_pieces(ink, (tx0, ty0, tx1, ty1), size)
        tokens = line.text.split()
        if len(pieces) == 1:
            x0, x1 = pieces[0]
        if len(pieces) > 1 and len(tokens) >= len(pieces):
            for (left, right), group in zip(pieces, _share_out(tokens, pieces), strict=True):
                words += _spread(" ".join(group), (left, y0, right, y1), size)
        else:
            words += _spread(line.text, (x0, y0, x1, y1), size)
    return words


def _spread(text: str, box: BBox, size: float) -> list[Word]:
    x0, y0, x1, y1 = box
    step = (x1 - x0) / max(len(text), 1)
    return [
        Word(m.group(), x0 + m.start() * step, y0, x0 + m.end() * step, y1, size)
        for m in re.finditer(r"\S+", text)
    ]


def _ink(image: Image.Image) -> np.ndarray:
    gray = np.asarray(image.convert("L"))
    return gray < 200  # antialiased strokes of small type are pale


def _tight(ink: np.ndarray, box: BBox) -> BBox:
    """``box`` shrunk to the ink inside it; rows and columns inked end to end (a ruling
    running through a padded box) do not count."""
    x0, y0, x1, y1 = (max(round(v), 0) for v in box)
    band = ink[y0:y1, x0:x1]
    if band.size == 0:
        return box
    band = band & ~(band.mean(axis=1, keepdims=True) > 0.9) & ~(band.mean(axis=0) > 0.9)
    rows, columns = np.flatnonzero(band.any(axis=1)), np.flatnonzero(band.any(axis=0))
    if rows.size == 0 or columns.size == 0:
        return box
    return (
        float(x0 + columns[0]),
        float(y0 + rows[0]),
        float(x0 + columns[-1] + 1),
        float(y0 + rows[-1] + 1),
    )


def _ink_pieces(ink: np.ndarray, box: BBox, size: float) -> list[tuple[float, float]]:
    """Stretches of a line's box holding ink, split where a gap is wider than the line's
    height times ``CHUNK_GAP`` (the space between two cells, not two words)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    trim = max((y1 - y0) // 5, 0)
    band = ink[max(y0 + trim, 0) : max(y1 - trim, 0), max(x0, 0) : max(x1, 0)]
    if band.size == 0:
        return []
    columns = np.flatnonzero(band.any(axis=0) & ~(band.mean(axis=0) > 0.9))
    if columns.size == 0:
        return []
    min_gap = CHUNK_GAP * size
    pieces: list[tuple[float, float]] = []
    start = previous = int(columns[0])
    for column in columns[1:]:
        if column - previous > min_gap:
            pieces.append((x0 + start, x0 + previous + 1))
            start = int(column)
        previous = int(column)
    pieces.append((x0 + start, x0 + previous + 1))
    return pieces


def _share_out(tokens: list[str], pieces: list[tuple[float, float]]) -> list[list[str]]:
    """Split ``tokens`` into one run per piece, so each run's share of the characters
    best matches its piece's share of the width (least squares, dynamic programming)."""
    n, m = len(tokens), len(pieces)
    widths = [right - left for left, right in pieces]
    total_width = sum(widths) or 1.0
    sizes = [len(t) + 1 for t in tokens]
    total_chars = sum(sizes)
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    inf = float("inf")
    # cost[j][i]: the first i tokens in the first j pieces.
    cost = [[inf] * (n + 1) for _ in range(m + 1)]
    cut = [[0] * (n + 1) for _ in range(m + 1)]
    cost[0][0] = 0.0
    for j in range(1, m + 1):
        share = widths[j - 1] / total_width
        for i in range(j, n - (m - j) + 1):
            for k in range(j - 1, i):
                if cost[j - 1][k] == inf:
                    continue
                error = ((prefix[i] - prefix[k]) / total_chars - share) ** 2
                if cost[j - 1][k] + error < cost[j][i]:
                    cost[j][i] = cost[j - 1][k] + error
                    cut[j][i] = k
    groups: list[list[str]] = []
    i = n
    for j in range(m, 0, -1):
        k = cut[j][i]
        groups.append(tokens[k:i])
        i = k
    return groups[::-1]


def text_height(words: Sequence[Word]) -> float:
    heights = [w.size or (w.y1 - w.y0) for w in words if w.y1 > w.y0]
    return statistics.median(heights) if heights else 10.0


def rows_of(words: Sequence[Word]) -> list[list[Word]]:
    """Words grouped into visual rows, top to bottom, each left to right."""
    rows: list[list[Word]] = []
    bands: list[tuple[float, float]] = []
    for word in sorted(words, key=lambda w: w.cy):
        if rows:
            top, bottom = bands[-1]
            overlap = min(bottom, word.y1) - max(top, word.y0)
            if overlap >= 0.5 * min(bottom - top, word.y1 - word.y0):
                rows[-1].append(word)
                continue
        rows.append([word])
        bands.append((word.y0, word.y1))
    return [sorted(row, key=lambda w: w.x0) for row in rows]


def row_chunks(row: Sequence[Word], height: float) -> list[Chunk]:
    chunks: list[list[Word]] = []
    for word in row:
        if chunks and word.x0 - chunks[-1][-1].x1 < CHUNK_GAP * height:
            chunks[-1].append(word)
        else:
            chunks.append([word])
    return [Chunk(tuple(c)) for c in chunks]


def word_inside(word: Word, box: BBox) -> bool:
    return box[0] <= word.cx <= box[2] and box[1] <= word.cy <= box[3]
