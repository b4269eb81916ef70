"""Reading one table: its rows, columns, merged cells and header rows.

Columns without rulings are the x-ranges no chunk of text covers on the rows
that have the most chunks; a chunk of another row (a header over two columns)
that crosses such a gap becomes a cell spanning both columns. Rows are the
text rows, or the horizontal rulings when most rows are ruled apart (a cell
then keeps all its lines). In a ruled grid, a grid line missing between two
slots merges them (row and column spans).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from PIL import Image

from docintel.document.rulings import Rulings, Segment, find_rulings
from docintel.document.tables import Cell, Table
from docintel.document.upright import Upright
from docintel.document.words import (
    Chunk,
    Word,
    row_chunks,
    rows_of,
    text_height,
    word_inside,
    words_of,
)
from docintel.geometry import BBox, TextLine

# Rulings whose positions differ by less than this many text heights are one grid line.
MERGE_TOLERANCE = 0.5
# A ruling stretch drawn over less than this share is absent: the slots beside it merge.
DRAWN = 0.5
# Unruled tables: at least this many columns and rows, and cells this short (median).
MIN_UNRULED_COLUMNS = 3
MIN_UNRULED_ROWS = 3
MAX_UNRULED_CELL_CHARS = 28
_LEADERS = re.compile(r"(?:\s*\.){4,}\s*$")


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
    inside = [w for w in words if word_inside(w, box)]
    if not inside:
        return None
    tol = max(MERGE_TOLERANCE * height, 3.0)
    text_rows = rows_of(inside)
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
        table = _read_rows(text_rows, col_edges, height)
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
) -> Table:
    """One table row per text row; a chunk crossing a column edge spans those columns."""
    cells: list[Cell] = []
    for r, row in enumerate(text_rows):
        placed: list[tuple[int, int, list[Word]]] = []
        for chunk in _split_at_edges(row_chunks(row, height), col_edges):
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
    return Table(tuple(cells), header_rows=header, shape=(len(text_rows), len(col_edges) - 1))


def _split_at_edges(chunks: list[Chunk], col_edges: list[float]) -> list[Chunk]:
    """Cut a chunk whose words fall into different columns with space between them.

    A chunk crosses a column edge either as a spanning header (its words sit over
    the gap) or because two cells were glued by a narrow gap: only the second
    is cut, at the edge.
    """
    out: list[Chunk] = []
    for chunk in chunks:
        pieces: list[list[Word]] = [[chunk.words[0]]]
        for word in chunk.words[1:]:
            previous = pieces[-1][-1]
            edge = next((e for e in col_edges[1:-1] if previous.x1 <= e <= word.x0), None)
            if edge is not None:
                pieces.append([word])
            else:
                pieces[-1].append(word)
        out.extend(Chunk(tuple(p)) for p in pieces)
    return out


def _whitespace_gaps(
    text_rows: list[list[Word]], box: BBox, height: float
) -> list[tuple[float, float]]:
    """The x-ranges between columns: those that (nearly) no full row's text covers.

    Full rows have at least the median number of chunks; rows with fewer (a
    spanning header, a wrapped label) may cross the gaps. So may a tenth of the
    full rows (a title set in wide type that happens to break into as many).
    """
    chunked = [row_chunks(row, height) for row in text_rows]
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
    text = " ".join(w.text for row in rows_of(words) for w in row)
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
