"""Tables from page geometry: where they are, and their rows, columns and merged cells.

Works on what every page has, born-digital or scanned: the page image (for
ruling lines) and the text lines with boxes (text layer or OCR). Three kinds
of table are found:

- ruled grids: horizontal and vertical rulings that cross each other; the
  grid lines give rows and columns, and a grid line missing between two slots
  merges them (row and column spans);
- tables ruled only across (rules above, below and under the header): the
  rules bound the table, whitespace gives the columns;
- unruled tables: runs of text rows split into several aligned chunks.

Columns without rulings are the x-ranges no chunk of text covers on the rows
that have the most chunks; a chunk of another row (a header over two columns)
that crosses such a gap becomes a cell spanning both columns. Rows are the
text rows, or the horizontal rulings when most rows are ruled apart (a cell
then keeps all its lines).

What must not come out as a table: paragraphs (one chunk per row), two-column
body text and tables of contents (two chunks, long prose), lists (a bullet and
a text: two chunks). Unruled tables need three columns and short cells.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from docintel.document.rulings import Rulings, Segment, find_rulings
from docintel.document.tables import Cell, Table
from docintel.geometry import BBox, Polygon, Region, TextLine

# Words closer than this many text heights belong to one chunk (a cell's text).
CHUNK_GAP = 0.55
# Rulings whose positions differ by less than this many text heights are one grid line.
MERGE_TOLERANCE = 0.5
# A ruling stretch drawn over less than this share is absent: the slots beside it merge.
DRAWN = 0.5
# Unruled tables: at least this many columns and rows, and cells this short (median).
MIN_UNRULED_COLUMNS = 3
MIN_UNRULED_ROWS = 3
MAX_UNRULED_CELL_CHARS = 28
_LEADERS = re.compile(r"(?:\s*\.){4,}\s*$")
# A run of text this long in a row is prose, not a cell (when finding unruled tables).
PROSE_CHARS = 45
# Rows of one unruled table are at most this many text heights apart.
MAX_ROW_GAP = 2.6
# A plot's area (inside its axes) is at most this share text: legends, labels.
MAX_PLOT_TEXT = 0.06
# Rules that bound a table ruled only across are at least this many text heights long.
MIN_RULE_LENGTH = 8.0


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

    def shifted(self, dx: float, dy: float) -> Word:
        return Word(self.text, self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy, self.size)


@dataclass(frozen=True, slots=True)
class _Chunk:
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


def _text_rows(words: Sequence[Word]) -> list[list[Word]]:
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


def _chunks(row: Sequence[Word], height: float) -> list[_Chunk]:
    chunks: list[list[Word]] = []
    for word in row:
        if chunks and word.x0 - chunks[-1][-1].x1 < CHUNK_GAP * height:
            chunks[-1].append(word)
        else:
            chunks.append([word])
    return [_Chunk(tuple(c)) for c in chunks]


def _inside(word: Word, box: BBox) -> bool:
    return box[0] <= word.cx <= box[2] and box[1] <= word.cy <= box[3]


# -- finding tables ---------------------------------------------------------------------


def find_tables(
    image: Image.Image, lines: Sequence[TextLine], *, exact_boxes: bool = False
) -> list[Region]:
    """Table (and chart) regions of one page, in page pixels, top to bottom.

    ``exact_boxes``: the lines' boxes are the text's own (a text layer), not an
    engine's padded estimate, so the ink need not be consulted for words.
    A page whose text mostly runs sideways (a landscape table set on a portrait
    page) is read turned upright, and its regions turned back.
    """
    upright = Upright.of(image, lines)
    found = _find_upright(upright.image, upright.lines, exact_boxes)
    regions = [replace(r, bbox=upright.back(r.bbox)) for r in found]
    return sorted(regions, key=lambda r: (r.bbox[1], r.bbox[0]))


def _find_upright(image: Image.Image, lines: Sequence[TextLine], exact: bool) -> list[Region]:
    words = words_of(lines, None if exact else image)
    height = text_height(words)
    if not any(len(_chunks(row, height)) >= 2 for row in _text_rows(words)):
        # Every row of text is one run (prose): no table has fewer than two columns,
        # and a plot's axis labels would make a row of several. Most pages end here.
        return []
    rulings = find_rulings(image, height)
    found: list[Region] = []
    for box in _grid_boxes(rulings, height):
        table = read_table(words, rulings, box, height)
        if table is None:
            continue
        if _mostly_empty(table):
            found.append(Region("chart", box, 0.5, "grid without text"))
        else:
            found.append(Region("table", box, 0.9, "ruled"))
    taken = [r.bbox for r in found]
    for box in _ruled_across_boxes(rulings, words, height, taken):
        if read_table(words, rulings, box, height, unruled=True) is not None:
            found.append(Region("table", box, 0.8, "rules across"))
            taken.append(box)
    free = [w for w in words if not any(_inside(w, box) for box in taken)]
    for box in _aligned_text_boxes(free, height):
        if read_table(words, rulings, box, height, unruled=True) is not None:
            found.append(Region("table", box, 0.7, "aligned text"))
            taken.append(box)
    for box in _chart_boxes(rulings, words, height, taken):
        found.append(Region("chart", box, 0.5, "axes"))
    return found


def _grid_boxes(rulings: Rulings, height: float) -> list[BBox]:
    """Boxes of connected groups of crossing rulings: at least 2 across and 2 down."""
    tol = max(0.5 * height, 3.0)
    h, v = list(rulings.horizontal), list(rulings.vertical)
    parent = list(range(len(h) + len(v)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, across in enumerate(h):
        for j, down in enumerate(v):
            if (
                across.start - tol <= down.position <= across.end + tol
                and down.start - tol <= across.position <= down.end + tol
            ):
                parent[root(i)] = root(len(h) + j)
    groups: dict[int, list[int]] = {}
    for i in range(len(parent)):
        groups.setdefault(root(i), []).append(i)
    boxes: list[BBox] = []
    for members in groups.values():
        rules = [h[i] for i in members if i < len(h)]
        posts = [v[i - len(h)] for i in members if i >= len(h)]
        if len(rules) < 2 or len(posts) < 2:
            continue
        box = (
            min([s.start for s in rules] + [s.position for s in posts]),
            min([s.position for s in rules] + [s.start for s in posts]),
            max([s.end for s in rules] + [s.position for s in posts]),
            max([s.position for s in rules] + [s.end for s in posts]),
        )
        if box[2] - box[0] > 2 * height and box[3] - box[1] > 1.5 * height:
            boxes.append(box)
    return boxes


def _ruled_across_boxes(
    rulings: Rulings, words: Sequence[Word], height: float, taken: list[BBox]
) -> list[BBox]:
    """Stacks of long rules of the same extent with aligned text between them."""
    long_rules = [
        s
        for s in rulings.horizontal
        if s.length >= MIN_RULE_LENGTH * height
        and not any(_overlaps((s.start, s.position, s.end, s.position), box) for box in taken)
    ]
    boxes: list[BBox] = []
    used: set[int] = set()
    for i, first in enumerate(long_rules):
        if i in used:
            continue
        stack = [first]
        for j in range(i + 1, len(long_rules)):
            other = long_rules[j]
            same_extent = (
                abs(other.start - first.start) <= 2 * height
                and abs(other.end - first.end) <= 2 * height
            )
            if same_extent and other.position - stack[-1].position <= 40 * height:
                stack.append(other)
                used.add(j)
        if len(stack) < 2:
            continue
        box = (
            min(s.start for s in stack),
            stack[0].position,
            max(s.end for s in stack),
            stack[-1].position,
        )
        inside = [w for w in words if _inside(w, box)]
        if len(_text_rows(inside)) >= 2:
            boxes.append(box)
    return boxes


def _aligned_text_boxes(words: Sequence[Word], height: float) -> list[BBox]:
    """Runs of rows that break into three or more chunks: candidates for unruled tables.

    Runs of prose (a column of body text beside the table) are left out first, so
    they neither count as a column nor widen the table's box.
    """
    rows = [kept for row in _text_rows(words) if (kept := _without_prose(row, height))]
    boxes: list[BBox] = []
    run: list[list[Word]] = []
    misses = 0

    def close() -> None:
        while run and len(_chunks(run[-1], height)) < MIN_UNRULED_COLUMNS:
            run.pop()
        if sum(len(_chunks(r, height)) >= MIN_UNRULED_COLUMNS for r in run) >= MIN_UNRULED_ROWS:
            flat = [w for r in run for w in r]
            boxes.append(
                (
                    min(w.x0 for w in flat),
                    min(w.y0 for w in flat),
                    max(w.x1 for w in flat),
                    max(w.y1 for w in flat),
                )
            )
        run.clear()

    for row in rows:
        tabular = len(_chunks(row, height)) >= MIN_UNRULED_COLUMNS
        near = (
            bool(run)
            and min(w.y0 for w in row) - max(w.y1 for w in run[-1]) <= MAX_ROW_GAP * height
        )
        if run and not near:
            close()
            misses = 0
        if tabular:
            if not run:
                # A header row above with two or more chunks (a spanning header) joins.
                previous = rows.index(row) - 1
                if previous >= 0 and len(_chunks(rows[previous], height)) >= 2:
                    above = rows[previous]
                    if min(w.y0 for w in row) - max(w.y1 for w in above) <= MAX_ROW_GAP * height:
                        run.append(above)
            run.append(row)
            misses = 0
        elif run:
            misses += 1
            if misses > 1:
                close()
                misses = 0
            else:
                run.append(row)  # a wrapped cell or a row label alone; dropped if last
    close()
    return boxes


def _without_prose(row: Sequence[Word], height: float) -> list[Word]:
    return [w for c in _chunks(row, height) if len(c.text) <= PROSE_CHARS for w in c.words]


def _chart_boxes(
    rulings: Rulings, words: Sequence[Word], height: float, taken: list[BBox]
) -> list[BBox]:
    """Plot axes: a long vertical and a long horizontal ruling meeting at a corner.

    The box takes in the tick labels left of and under the axes and a title above.
    """
    minimum = 6 * height
    tol = max(height, 4.0)
    boxes: list[BBox] = []
    for down in rulings.vertical:
        if down.length < minimum:
            continue
        for across in rulings.horizontal:
            if across.length < minimum:
                continue
            corner = (
                abs(across.start - down.position) <= tol and abs(down.end - across.position) <= tol
            )
            if not corner:
                continue
            plot = (down.position, down.start, across.end, across.position)
            if _text_density(words, plot) > MAX_PLOT_TEXT or not _has_ticks(words, plot, height):
                continue  # a framed text box or screenshot, not a plot
            box = (
                max(down.position - 6 * height, 0.0),
                max(down.start - 2.5 * height, 0.0),
                across.end + height,
                across.position + 3.5 * height,
            )
            if not any(_overlaps(box, other) for other in taken + boxes):
                boxes.append(box)
    return boxes


def _has_ticks(words: Sequence[Word], plot: BBox, height: float) -> bool:
    """Tick labels: a row of three or more labels under the x axis, or three or more
    stacked left of the y axis (a caption under a frame is one run of words)."""
    x0, y0, x1, y1 = plot
    under = [w for w in words if _inside(w, (x0 - height, y1, x1 + height, y1 + 3 * height))]
    if any(len(_chunks(row, height)) >= 3 for row in _text_rows(under)):
        return True
    beside = [w for w in words if _inside(w, (x0 - 6 * height, y0, x0, y1))]
    return len(_text_rows(beside)) >= 3


def _text_density(words: Sequence[Word], box: BBox) -> float:
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    inside = [w for w in words if _inside(w, box)]
    return sum((w.x1 - w.x0) * (w.y1 - w.y0) for w in inside) / area


def _overlaps(a: BBox, b: BBox) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] <= b[3] and b[1] <= a[3]


def _mostly_empty(table: Table) -> bool:
    """A grid whose slots are nearly all empty is a plot's gridlines, not a table."""
    slots = [text for row in table.rows for text in row]
    return len(slots) >= 12 and sum(bool(t) for t in slots) < 0.2 * len(slots)


# -- reading one table ---------------------------------------------------------------------


def read_table(
    words: Sequence[Word],
    rulings: Rulings,
    box: BBox,
    height: float,
    *,
    unruled: bool = False,
) -> Table | None:
    """The table inside ``box``, or None when what is there is not a table.

    ``unruled`` asks for the stricter checks of a table found by text alignment.
    """
    inside = [w for w in words if _inside(w, box)]
    if not inside:
        return None
    tol = max(MERGE_TOLERANCE * height, 3.0)
    text_rows = _text_rows(inside)
    # Grid lines: rulings across half the table, or across a few cells (the rule under
    # a spanning header); where one is missing between two slots, they merge.
    cols = _interior(
        [s for s in rulings.vertical if _spans(s, box[1], box[3], 0.5, math.inf)],
        box[0],
        box[2],
        tol,
    )
    rows = _interior(
        [s for s in rulings.horizontal if _spans(s, box[0], box[2], 0.5, 5 * height)],
        box[1],
        box[3],
        tol,
    )
    # A ruling with no text beyond it is the table's (double) border, not a grid line.
    cols = [x for x in cols if any(w.cx < x for w in inside) and any(w.cx > x for w in inside)]
    rows = [y for y in rows if any(w.cy < y for w in inside) and any(w.cy > y for w in inside)]
    # Rulings between groups of columns, whitespace within them.
    col_edges = _merged_edges(_whitespace_gaps(text_rows, box, height), cols, box, tol)
    # A ruled grid: most rows ruled apart, and the column rulings account for the
    # columns the text shows (a rule or two between groups of columns do not).
    ruled_grid = bool(cols) and len(rows) >= max(1, (len(text_rows) - 1) // 2)
    if ruled_grid:
        table = _read_grid(inside, rulings, box, [box[0], *cols, box[2]], [box[1], *rows, box[3]])
    else:
        table = _read_rows(text_rows, col_edges, height, rulings_rows=rows)
    table = _without_empty_lines(table)
    n_rows, n_cols = table.shape
    if n_rows < 2 or n_cols < 2:
        return None
    if unruled and not cols:
        texts = [c.text for c in table.cells if c.text]
        if (
            n_cols < MIN_UNRULED_COLUMNS
            or n_rows < MIN_UNRULED_ROWS - 1
            or len(texts) < 0.4 * n_rows * n_cols
            or statistics.median(len(t) for t in texts) > MAX_UNRULED_CELL_CHARS
        ):
            return None
    return table


def _spans(segment: Segment, start: float, end: float, share: float, enough: float) -> bool:
    overlap = min(segment.end, end) - max(segment.start, start)
    return overlap >= min(share * (end - start), enough)


def _interior(segments: Sequence[Segment], low: float, high: float, tol: float) -> list[float]:
    """Grid line positions strictly inside ``low..high``, close ones merged."""
    positions: list[list[float]] = []
    for position in sorted(s.position for s in segments):
        if position <= low + tol or position >= high - tol:
            continue
        if positions and position - positions[-1][-1] <= tol:
            positions[-1].append(position)
        else:
            positions.append([position])
    return [statistics.mean(p) for p in positions]


def _read_grid(
    words: Sequence[Word],
    rulings: Rulings,
    box: BBox,
    col_edges: list[float],
    row_edges: list[float],
) -> Table:
    n_rows, n_cols = len(row_edges) - 1, len(col_edges) - 1
    parent = list(range(n_rows * n_cols))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r in range(n_rows):
        top, bottom = row_edges[r], row_edges[r + 1]
        margin = 0.15 * (bottom - top)
        for c in range(n_cols - 1):
            drawn = rulings.drawn(True, col_edges[c + 1], top + margin, bottom - margin)
            if drawn < DRAWN:
                parent[root(r * n_cols + c + 1)] = root(r * n_cols + c)
    for c in range(n_cols):
        left, right = col_edges[c], col_edges[c + 1]
        margin = 0.15 * (right - left)
        for r in range(n_rows - 1):
            drawn = rulings.drawn(False, row_edges[r + 1], left + margin, right - margin)
            if drawn < DRAWN:
                parent[root((r + 1) * n_cols + c)] = root(r * n_cols + c)

    slots: dict[int, list[int]] = {}
    for i in range(n_rows * n_cols):
        slots.setdefault(root(i), []).append(i)
    texts: dict[int, list[Word]] = {}
    for word in words:
        r = _index(row_edges, word.cy)
        c = _index(col_edges, word.cx)
        texts.setdefault(root(r * n_cols + c), []).append(word)
    cells: list[Cell] = []
    for group, members in slots.items():
        r0 = min(i // n_cols for i in members)
        r1 = max(i // n_cols for i in members)
        c0 = min(i % n_cols for i in members)
        c1 = max(i % n_cols for i in members)
        cells.append(
            Cell(
                row=r0,
                col=c0,
                text=_cell_text(texts.get(group, [])),
                row_span=r1 - r0 + 1,
                col_span=c1 - c0 + 1,
                bbox=(col_edges[c0], row_edges[r0], col_edges[c1 + 1], row_edges[r1 + 1]),
            )
        )
    cells.sort(key=lambda cell: (cell.row, cell.col))
    return Table(tuple(cells), header_rows=_header_rows(cells, n_rows), bbox=box)


def _read_rows(
    text_rows: list[list[Word]],
    col_edges: list[float],
    height: float,
    *,
    rulings_rows: list[float],
) -> Table:
    """One table row per text row; a chunk crossing a column edge spans those columns."""
    n_cols = len(col_edges) - 1
    cells: list[Cell] = []
    for r, row in enumerate(text_rows):
        placed: list[tuple[int, int, list[Word]]] = []
        for chunk in _split_at_edges(_chunks(row, height), col_edges):
            first = _index(col_edges, chunk.x0 + 0.25 * height)
            last = max(_index(col_edges, chunk.x1 - 0.25 * height), first)
            if placed and first <= placed[-1][1]:
                start, _, words = placed[-1]
                placed[-1] = (start, max(last, placed[-1][1]), [*words, *chunk.words])
            else:
                placed.append((first, last, list(chunk.words)))
        top = min(w.y0 for w in row)
        bottom = max(w.y1 for w in row)
        for first, last, words in placed:
            cells.append(
                Cell(
                    row=r,
                    col=first,
                    text=_cell_text(words),
                    col_span=last - first + 1,
                    bbox=(col_edges[first], top, col_edges[last + 1], bottom),
                )
            )
    header = 1 if len(text_rows) >= 2 else 0
    if header and any(c.row == 0 and c.col_span > 1 for c in cells) and len(text_rows) > 2:
        header = 2  # a spanning header over a row of sub-headers
    del n_cols, rulings_rows
    return Table(tuple(cells), header_rows=header, shape=(len(text_rows), len(col_edges) - 1))


def _split_at_edges(chunks: list[_Chunk], col_edges: list[float]) -> list[_Chunk]:
    """Cut a chunk whose words fall into different columns with space between them.

    A chunk crosses a column edge either as a spanning header (its words sit over
    the gap) or because two cells were glued by a narrow gap: only the second
    is cut, at the edge.
    """
    out: list[_Chunk] = []
    for chunk in chunks:
        pieces: list[list[Word]] = [[chunk.words[0]]]
        for word in chunk.words[1:]:
            previous = pieces[-1][-1]
            edge = next((e for e in col_edges[1:-1] if previous.x1 <= e <= word.x0), None)
            if edge is not None:
                pieces.append([word])
            else:
                pieces[-1].append(word)
        out.extend(_Chunk(tuple(p)) for p in pieces)
    return out


def _whitespace_gaps(
    text_rows: list[list[Word]], box: BBox, height: float
) -> list[tuple[float, float]]:
    """The x-ranges between columns: those that (nearly) no full row's text covers.

    Full rows have at least the median number of chunks; rows with fewer (a
    spanning header, a wrapped label) may cross the gaps. So may a tenth of the
    full rows (a title set in wide type that happens to break into as many).
    """
    chunked = [_chunks(row, height) for row in text_rows]
    if chunked:
        typical = sorted(len(row) for row in chunked)[len(chunked) // 2]
        chunked = [row for row in chunked if len(row) >= typical]
    left, right = int(box[0]), int(box[2]) + 1
    if not chunked or right <= left:
        return []
    coverage = np.zeros(right - left, dtype=np.int32)
    for row in chunked:
        for chunk in row:
            a, b = max(int(chunk.x0) - left, 0), min(int(chunk.x1) + 1 - left, right - left)
            coverage[a:b] += 1
    allowed = len(chunked) // 10
    covered = np.flatnonzero(coverage > allowed)
    if not covered.size:
        return []
    breaks = np.flatnonzero(np.diff(covered) >= max(0.4 * height, 2.0))
    return [(float(left + covered[k]), float(left + covered[k + 1])) for k in breaks]


def _merged_edges(
    gaps: list[tuple[float, float]], rulings: list[float], box: BBox, tol: float
) -> list[float]:
    """Column edges: the rulings, and the middle of every gap no ruling runs through."""
    kept = [
        (start + end) / 2
        for start, end in gaps
        if not any(start - tol <= r <= end + tol for r in rulings)
    ]
    return [box[0], *sorted([*kept, *rulings]), box[2]]


def _index(edges: list[float], value: float) -> int:
    for k in range(1, len(edges) - 1):
        if value < edges[k]:
            return k - 1
    return len(edges) - 2


def _cell_text(words: Sequence[Word]) -> str:
    text = " ".join(w.text for row in _text_rows(words) for w in row)
    # Dot leaders ("Total . . . . . .") fill space; they are not the cell's text.
    return _LEADERS.sub("", text)


def _header_rows(cells: Sequence[Cell], n_rows: int) -> int:
    """The first row, and the rows below it that a merged header cell reaches or covers."""
    if n_rows < 2:
        return 0
    header = max((c.row_span for c in cells if c.row == 0), default=1)
    while header < n_rows - 1 and any(
        c.row == header - 1 and c.col_span > 1 and c.row_span == 1 for c in cells
    ):
        header += 1
    return min(header, n_rows - 1)


def _without_empty_lines(table: Table) -> Table:
    """Drop rows and columns with no text in any slot (double rules, padding)."""
    grid = table.rows
    if not grid:
        return table
    keep_rows = [r for r, row in enumerate(grid) if any(row)]
    keep_cols = [c for c in range(table.shape[1]) if any(grid[r][c] for r in range(len(grid)))]
    if len(keep_rows) == len(grid) and len(keep_cols) == table.shape[1]:
        return table
    row_at = {r: k for k, r in enumerate(keep_rows)}
    col_at = {c: k for k, c in enumerate(keep_cols)}
    cells: list[Cell] = []
    for cell in table.cells:
        rows = [row_at[r] for r in range(cell.row, cell.row + cell.row_span) if r in row_at]
        cols = [col_at[c] for c in range(cell.col, cell.col + cell.col_span) if c in col_at]
        if not rows or not cols:
            continue
        cells.append(
            Cell(
                row=rows[0],
                col=cols[0],
                text=cell.text,
                row_span=len(rows),
                col_span=len(cols),
                bbox=cell.bbox,
            )
        )
    header = sum(1 for r in keep_rows if r < table.header_rows)
    return Table(
        tuple(cells),
        header_rows=min(header, max(len(keep_rows) - 1, 0)),
        bbox=table.bbox,
        shape=(len(keep_rows), len(keep_cols)),
    )


# Pixels added round a region before cropping, so its outer rulings are inside the crop.
CROP_MARGIN = 6


def crop_region(
    image: Image.Image, lines: Sequence[TextLine], box: BBox
) -> tuple[Image.Image, list[TextLine], tuple[int, int]] | None:
    """The region's crop (with a margin), its lines moved into the crop, and the crop's
    origin on the page; None when the region lies outside the page."""
    left = max(int(box[0]) - CROP_MARGIN, 0)
    top = max(int(box[1]) - CROP_MARGIN, 0)
    right = min(int(box[2] + 0.999) + CROP_MARGIN, image.width)
    bottom = min(int(box[3] + 0.999) + CROP_MARGIN, image.height)
    if right - left < 2 or bottom - top < 2:
        return None
    inside = [_moved(line, -left, -top) for line in lines if _centre_in(line, box)]
    return image.crop((left, top, right, bottom)), inside, (left, top)


def _centre_in(line: TextLine, box: BBox) -> bool:
    x0, y0, x1, y1 = line.bbox
    return box[0] <= (x0 + x1) / 2 <= box[2] and box[1] <= (y0 + y1) / 2 <= box[3]


def _moved(line: TextLine, dx: float, dy: float) -> TextLine:
    p = line.polygon
    polygon = (
        p[0] + dx,
        p[1] + dy,
        p[2] + dx,
        p[3] + dy,
        p[4] + dx,
        p[5] + dy,
        p[6] + dx,
        p[7] + dy,
    )
    return TextLine(line.text, polygon, line.confidence)


def read_region(
    image: Image.Image, lines: Sequence[TextLine], *, exact_boxes: bool = False
) -> Table | None:
    """The table filling a region's crop (``lines`` in the crop's pixels; cell boxes too).

    A table whose text runs sideways is read turned upright.
    """
    upright = Upright.of(image, lines)
    words = words_of(upright.lines, None if exact_boxes else upright.image)
    height = text_height(words)
    rulings = find_rulings(upright.image, height)
    box = (0.0, 0.0, float(upright.image.width), float(upright.image.height))
    table = read_table(words, rulings, box, height)
    if table is None or upright.turns == 0:
        return table
    cells = tuple(replace(c, bbox=upright.back(c.bbox)) if c.bbox else c for c in table.cells)
    return replace(table, cells=cells, bbox=upright.back(box))


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
