"""Finding tables (and charts) on a page from its geometry.

Works on what every page has, born-digital or scanned: the page image (for
ruling lines) and the text lines with boxes (text layer or OCR). Three kinds
of table are found:

- ruled grids: horizontal and vertical rulings that cross each other; the
  grid lines give rows and columns, and a grid line missing between two slots
  merges them (row and column spans);
- tables ruled only across (rules above, below and under the header): the
  rules bound the table, whitespace gives the columns;
- unruled tables: runs of text rows split into several aligned chunks.

Each candidate is read (``table_reader``) before it counts: a region that gives no
rows and columns is not a table.

What must not come out as a table: paragraphs (one chunk per row), two-column
body text and tables of contents (two chunks, long prose), lists (a bullet and
a text: two chunks). Unruled tables need three columns and short cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from PIL import Image

from docintel.document.rulings import Rulings, find_rulings
from docintel.document.table_reader import MIN_UNRULED_COLUMNS, MIN_UNRULED_ROWS, read_table
from docintel.document.tables import Table
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
from docintel.geometry import BBox, Region, TextLine

# A run of text this long in a row is prose, not a cell (when finding unruled tables).
PROSE_CHARS = 45
# Rows of one unruled table are at most this many text heights apart.
MAX_ROW_GAP = 2.6
# A plot's area (inside its axes) is at most this share text: legends, labels.
MAX_PLOT_TEXT = 0.06
# Rules that bound a table ruled only across are at least this many text heights long.
MIN_RULE_LENGTH = 8.0
# A vertical rule this share of the page tall, crossing no rule, divides the page.
DIVIDER_SHARE = 0.4


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
    rows = rows_of(words)
    if not any(len(row_chunks(row, height)) >= 2 for row in rows) and _prose(rows):
        # Every row of text is one run, mostly of prose: no table has fewer than two
        # columns, and a plot's axis labels would make a row of several. Most pages end
        # here. A page of a few short runs goes on to look for ruled grids: in a scan,
        # the cells OCR could not read (a script it does not know) leave one run a row.
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
    free = [w for w in words if not any(word_inside(w, box) for box in taken)]
    for pane in _panes(free, rulings, image.height):
        for box in _aligned_text_boxes(pane, height):
            if read_table(words, rulings, box, height, unruled=True) is not None:
                found.append(Region("table", box, 0.7, "aligned text"))
                taken.append(box)
    for box in _chart_boxes(rulings, words, height, taken):
        found.append(Region("chart", box, 0.5, "axes"))
    return found


def _prose(rows: Sequence[Sequence[Word]]) -> bool:
    """Whether most of the text is in long runs (body text), not short labels."""
    chars = [sum(len(w.text) + 1 for w in row) for row in rows]
    return sum(n for n in chars if n > PROSE_CHARS) >= 0.5 * sum(chars)


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
        inside = [w for w in words if word_inside(w, box)]
        if len(rows_of(inside)) >= 2:
            boxes.append(box)
    return boxes


def _panes(words: Sequence[Word], rulings: Rulings, page_height: int) -> list[list[Word]]:
    """The words between the page's dividers: vertical rules that run most of the page
    and cross no horizontal rule (the fold of a spread, the rule between newspaper
    columns). Rows of text on either side share baselines, not a table.
    """
    dividers = sorted(
        v.position
        for v in rulings.vertical
        if v.length >= DIVIDER_SHARE * page_height
        and not any(
            h.start < v.position < h.end and v.start < h.position < v.end
            for h in rulings.horizontal
        )
    )
    panes: list[list[Word]] = [[] for _ in range(len(dividers) + 1)]
    for word in words:
        centre = (word.x0 + word.x1) / 2
        panes[sum(centre > x for x in dividers)].append(word)
    return [pane for pane in panes if pane]


def _aligned_text_boxes(words: Sequence[Word], height: float) -> list[BBox]:
    """Runs of rows that break into three or more chunks: candidates for unruled tables.

    Runs of prose (a column of body text beside the table) are left out first, so
    they neither count as a column nor widen the table's box.
    """
    rows = [kept for row in rows_of(words) if (kept := _without_prose(row, height))]
    boxes: list[BBox] = []
    run: list[list[Word]] = []
    columns: list[tuple[float, float]] = []  # x-extents of the run's cells so far
    misses = 0

    def close() -> None:
        while run and len(row_chunks(run[-1], height)) < MIN_UNRULED_COLUMNS:
            run.pop()
        if sum(len(row_chunks(r, height)) >= MIN_UNRULED_COLUMNS for r in run) >= MIN_UNRULED_ROWS:
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
        columns.clear()

    for index, row in enumerate(rows):
        chunks = row_chunks(row, height)
        # A row with empty cells has fewer chunks; it still belongs when each of them
        # sits in a column of the run.
        tabular = len(chunks) >= MIN_UNRULED_COLUMNS or (
            bool(run) and len(chunks) >= 2 and _in_columns(chunks, columns)
        )
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
                above = rows[index - 1] if index else None
                if (
                    above is not None
                    and len(row_chunks(above, height)) >= 2
                    and min(w.y0 for w in row) - max(w.y1 for w in above) <= MAX_ROW_GAP * height
                ):
                    run.append(above)
            run.append(row)
            columns.extend((c.x0, c.x1) for c in chunks)
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


def _in_columns(chunks: Sequence[Chunk], columns: Sequence[tuple[float, float]]) -> bool:
    return all(any(c.x0 < x1 and x0 < c.x1 for x0, x1 in columns) for c in chunks)


def _without_prose(row: Sequence[Word], height: float) -> list[Word]:
    return [w for c in row_chunks(row, height) if len(c.text) <= PROSE_CHARS for w in c.words]


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
    under = [w for w in words if word_inside(w, (x0 - height, y1, x1 + height, y1 + 3 * height))]
    if any(len(row_chunks(row, height)) >= 3 for row in rows_of(under)):
        return True
    beside = [w for w in words if word_inside(w, (x0 - 6 * height, y0, x0, y1))]
    return len(rows_of(beside)) >= 3


def _text_density(words: Sequence[Word], box: BBox) -> float:
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1.0)
    inside = [w for w in words if word_inside(w, box)]
    return sum((w.x1 - w.x0) * (w.y1 - w.y0) for w in inside) / area


def _overlaps(a: BBox, b: BBox) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] <= b[3] and b[1] <= a[3]


def _mostly_empty(table: Table) -> bool:
    """A grid whose slots are nearly all empty is a plot's gridlines, not a table."""
    slots = [text for row in table.rows for text in row]
    return len(slots) >= 12 and sum(bool(t) for t in slots) < 0.2 * len(slots)


# -- reading one table ---------------------------------------------------------------------


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
    inside = [_moved(line, -left, -top) for line in lines if centre_in(line, box)]
    return image.crop((left, top, right, bottom)), inside, (left, top)


def centre_in(line: TextLine, box: BBox) -> bool:
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
