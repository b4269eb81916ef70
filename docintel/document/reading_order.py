"""Reading order, page text and page Markdown from OCR'd or native text lines.

Pure functions over :class:`TextLine` geometry; no engine or database involved.

The geometry is first brought into an upright, deskewed frame: the dominant
reading direction of the lines (their polygons start at the text's top-left
corner, so the first edge runs along the text) tells whether the page content is
turned by 90/180/270 degrees, and the spread around it gives the skew. All
decisions below are made on axis-aligned boxes in that frame, so a sideways scan
whose polygons are in the original pixels is ordered like an upright one.

Ordering is a recursive XY-cut:

1. A region splits into columns at vertical gaps of its x-projection, when every
   column is wide enough to hold running text (narrow pieces are table cells or
   labels, read row by row instead).
2. Otherwise it splits at horizontal gaps of its y-projection into bands, and
   consecutive bands that together still split into columns are kept together.
   A full-width header (which crosses the gutter) therefore ends up alone, above
   the columns it spans, and the columns below it stay whole.
3. A region that splits neither way is read row by row, left to right.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from docintel.document.rotation import reading_angle
from docintel.geometry import TextLine

# A gap of the x-projection must be this many line heights wide to separate columns.
COLUMN_GAP = 0.5
# Every column must be at least this many line heights wide: narrower pieces are
# table cells or form labels, which read better across the row.
MIN_COLUMN_WIDTH = 8.0
# Boxes are trimmed by this share of their height before looking for horizontal gaps:
# detectors pad boxes, so neighbouring lines often overlap by a pixel or two.
BOX_TRIM = 0.15
# Two boxes whose vertical overlap is at least this share of the lower one share a row.
SAME_ROW = 0.5
# A vertical gap above this many line heights starts a new paragraph.
PARAGRAPH_GAP = 0.8
# Whatever the font size, a piece this wide (as a share of the page width) is a column.
MIN_COLUMN_SHARE = 0.25
# A line this much taller than the body text (median) on a short block is a heading.
HEADING_RATIO = 1.35
# Consecutive lines whose heights differ by this factor belong to different blocks.
# Looser than HEADING_RATIO: detector boxes of one paragraph vary with ascenders,
# descenders and brackets by 30% and more.
SIZE_CHANGE = 1.6

# A box this many times the height of the lines round it is an initial or drop capital.
DROP_CAP_RATIO = 1.8

_BULLETS = ("•", "·", "▪", "●", "◦", "‣", "∙", "■", "□", "➢", "►")


@dataclass(frozen=True, slots=True)
class _Box:
    index: int
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center_y(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass(frozen=True, slots=True)
class _Cut:
    """Thresholds of the XY-cut for one page, in upright-frame pixels."""

    line_height: float
    min_width: float

    @property
    def min_gap(self) -> float:
        return COLUMN_GAP * self.line_height


# -- public API ---------------------------------------------------------------------


def order_lines(lines: Sequence[TextLine], page_width: float, page_height: float) -> list[TextLine]:
    """The lines in reading order: columns one after another, rows left to right."""
    if not lines:
        return []
    direction = _text_direction(lines)
    boxes = _upright_boxes(lines, direction)
    line_height = _median_height(boxes)
    min_width = MIN_COLUMN_WIDTH * line_height
    # On a sideways page the upright page width is the image height.
    upright_width = page_height if round(direction / 90.0) % 2 else page_width
    if upright_width > 0:
        min_width = min(min_width, MIN_COLUMN_SHARE * upright_width)
    order = _xy_cut(boxes, _Cut(line_height, min_width))
    return [lines[i] for i in order]


def page_text(lines: Sequence[TextLine]) -> str:
    """Plain text of lines already in reading order.

    Pieces of one visual row are joined with a space, rows with a newline, and a
    blank line separates paragraphs and blocks (a large vertical gap, a jump to
    the next column, or a change of text size).
    """
    return "\n\n".join("\n".join(row for row in block) for block in _blocks(lines))


def page_markdown(lines: Sequence[TextLine]) -> str:
    """Simple Markdown for lines already in reading order.

    Paragraphs become single Markdown paragraphs (hyphenated line breaks joined),
    short blocks set in clearly larger type become ``##`` headings, and lines
    starting with a bullet sign become list items.
    """
    if not lines:
        return ""
    boxes = _upright_boxes(lines, _text_direction(lines))
    body_height = _median_height(boxes)
    parts: list[str] = []
    for block, heights in _blocks_with_heights(lines, boxes):
        rows = [row.strip() for row in block if row.strip()]
        if not rows:
            continue
        joined = _join_rows(rows)
        if (
            len(rows) <= 2
            and statistics.median(heights) >= HEADING_RATIO * body_height
            and len(joined) <= 150
            and not _is_bullet(rows[0])
        ):
            parts.append("## " + joined)
        elif any(_is_bullet(row) for row in rows):
            parts.append(_markdown_list(rows))
        else:
            parts.append(_escape_block_start(joined))
    return "\n\n".join(parts) + ("\n" if parts else "")


@dataclass(frozen=True, slots=True)
class Block:
    """Something read whole in its place on the page, a table: its box, text and Markdown."""

    bbox: tuple[float, float, float, float]
    text: str
    markdown: str


def compose_page(
    lines: Sequence[TextLine], blocks: Sequence[Block], page_width: float, page_height: float
) -> tuple[str, str]:
    """Page text and Markdown with each block in its place in reading order.

    Lines whose centre lies inside a block are the block's own words: they are
    not repeated around it. ``lines`` need not be ordered.
    """
    loose = [line for line in lines if not any(_within(line, b.bbox) for b in blocks)]
    stand_ins = [
        TextLine(f"\x00{k}", (x0, y0, x1, y0, x1, y1, x0, y1), 1.0)
        for k, (x0, y0, x1, y1) in enumerate(b.bbox for b in blocks)
    ]
    texts: list[str] = []
    markdowns: list[str] = []
    run: list[TextLine] = []

    def flush() -> None:
        if run:
            texts.append(page_text(run))
            markdowns.append(page_markdown(run).rstrip("\n"))
            run.clear()

    for line in order_lines([*loose, *stand_ins], page_width, page_height):
        if line.text.startswith("\x00"):
            flush()
            block = blocks[int(line.text[1:])]
            texts.append(block.text)
            markdowns.append(block.markdown)
        else:
            run.append(line)
    flush()
    markdown = "\n\n".join(m for m in markdowns if m)
    return "\n\n".join(t for t in texts if t), markdown + ("\n" if markdown else "")


def _within(line: TextLine, box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = line.bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


# -- geometry -----------------------------------------------------------------------


def _text_direction(lines: Sequence[TextLine]) -> float:
    """Direction the page's text runs in, degrees counter-clockwise (0 = upright).

    The dominant quarter turn of the lines' baselines (a page scanned sideways or
    upside down), plus the skew: the weighted median of each line's deviation from
    that turn, limited to small angles (larger ones are rotated text, not skew).
    """
    weighted = [(reading_angle(line.polygon), _baseline_length(line)) for line in lines]
    totals = dict.fromkeys((0, 90, 180, 270), 0.0)
    for angle, weight in weighted:
        totals[round(angle / 90.0) * 90 % 360] += weight
    turn = max(totals, key=lambda a: (totals[a], a == 0))
    deviations = sorted(
        (_wrap(angle - turn), weight)
        for angle, weight in weighted
        if abs(_wrap(angle - turn)) <= 20.0 and weight > 0
    )
    return turn + (_weighted_median(deviations) if deviations else 0.0)


def _upright_boxes(lines: Sequence[TextLine], direction: float) -> list[_Box]:
    """Axis-aligned boxes of the lines with the page turned so its text runs upright.

    Only relative positions matter for ordering, so the turn is about the origin.
    """
    cos_d, sin_d = math.cos(math.radians(direction)), math.sin(math.radians(direction))
    boxes = []
    for index, line in enumerate(lines):
        xs: list[float] = []
        ys: list[float] = []
        for i in range(0, 8, 2):
            x, y = line.polygon[i], line.polygon[i + 1]
            # Turn clockwise by `direction` (on screen, y pointing down).
            xs.append(x * cos_d - y * sin_d)
            ys.append(x * sin_d + y * cos_d)
        boxes.append(_Box(index, min(xs), min(ys), max(xs), max(ys)))
    return boxes


def _baseline_length(line: TextLine) -> float:
    p = line.polygon
    return math.hypot(p[2] - p[0], p[3] - p[1])


def _wrap(angle: float) -> float:
    """An angle difference brought into (-180, 180]."""
    wrapped = (angle + 180.0) % 360.0 - 180.0
    return 180.0 if wrapped == -180.0 else wrapped


def _weighted_median(items: list[tuple[float, float]]) -> float:
    half = sum(w for _, w in items) / 2
    running = 0.0
    for value, weight in items:
        running += weight
        if running >= half:
            return value
    return items[-1][0]


def _median_height(boxes: Sequence[_Box]) -> float:
    heights = [b.height for b in boxes if b.height > 0]
    return max(statistics.median(heights), 1.0) if heights else 1.0


# -- XY-cut -------------------------------------------------------------------------


def _xy_cut(boxes: list[_Box], cut: _Cut) -> list[int]:
    if len(boxes) <= 1:
        return [b.index for b in boxes]
    columns = _split_columns(boxes, cut)
    if columns is not None:
        return [i for column in columns for i in _xy_cut(column, cut)]
    bands = _split_bands(boxes)
    if len(bands) == 1:
        return _by_rows(boxes)
    groups: list[list[list[_Box]]] = [[bands[0]]]
    for band in bands[1:]:
        # Keep bands together while they share a column structure, so the columns
        # of a multi-column stretch are read whole rather than band by band.
        if _split_columns(_flatten([*groups[-1], band]), cut) is not None:
            groups[-1].append(band)
        else:
            groups.append([band])
    _reattach_headings(groups, cut)
    if len(groups) == 1:  # cannot happen (the union has no columns), but never loop
        return _by_rows(boxes)
    return [i for group in groups for i in _xy_cut(_flatten(group), cut)]


def _reattach_headings(groups: list[list[list[_Box]]], cut: _Cut) -> None:
    """Give a column stretch's trailing heading to the full-width block it introduces.

    A short band under one column only ("Additional Features" under the left column,
    followed by a full-width list) also keeps the column structure, so it was grouped
    with the columns and would be read before the right column. It belongs below when
    it sits under every column and is closer to the block below than to the columns
    above. (A longer column that simply runs on is far from a following block.)
    """
    for i in range(len(groups) - 1):
        group, following = groups[i], groups[i + 1]
        while len(group) > 1:
            band, rest = group[-1], _flatten(group[:-1])
            columns = _split_columns(rest, cut)
            if columns is None or len(_columns_touched(band, columns)) != 1:
                break
            band_top = min(b.y0 for b in band)
            band_bottom = max(b.y1 for b in band)
            gap_above = band_top - max(b.y1 for b in rest)
            gap_below = min(b.y0 for b in following[0]) - band_bottom
            if gap_above <= 0 or gap_above <= gap_below:
                break
            following.insert(0, group.pop())


def _columns_touched(band: list[_Box], columns: list[list[_Box]]) -> set[int]:
    spans = [(min(b.x0 for b in c), max(b.x1 for b in c)) for c in columns]
    touched = set()
    for box in band:
        for k, (x0, x1) in enumerate(spans):
            if box.x0 < x1 and box.x1 > x0:
                touched.add(k)
    return touched


def _flatten(bands: list[list[_Box]]) -> list[_Box]:
    return [box for band in bands for box in band]


def _split_columns(boxes: list[_Box], cut: _Cut) -> list[list[_Box]] | None:
    """Split at vertical gaps when every resulting column is wide enough for text."""
    spans = _merge_intervals([(b.x0, b.x1) for b in boxes])
    if len(spans) < 2:
        return None
    min_gap, min_width = cut.min_gap, cut.min_width
    cuts: list[float] = []
    start = spans[0][0]
    right_end = spans[-1][1]
    for (_, left_end), (right_start, _) in itertools.pairwise(spans):
        if right_start - left_end < min_gap:
            continue
        if left_end - start >= min_width and right_end - right_start >= min_width:
            cuts.append((left_end + right_start) / 2)
            start = right_start
    if not cuts:
        return None
    columns: list[list[_Box]] = [[] for _ in range(len(cuts) + 1)]
    for box in boxes:
        column = sum(1 for position in cuts if (box.x0 + box.x1) / 2 > position)
        columns[column].append(box)
    return [c for c in columns if c]


def _split_bands(boxes: list[_Box]) -> list[list[_Box]]:
    """Split at horizontal gaps of the y-projection, top to bottom."""
    # By top, as intervals are merged: sorted by centre, a tall box (a drop capital)
    # came after the line level with its top, which then stood alone as a band.
    ordered = sorted(boxes, key=lambda b: (b.y0 + BOX_TRIM * b.height, b.x0))
    bands: list[list[_Box]] = []
    band_end = -math.inf
    for box in ordered:
        trim = BOX_TRIM * box.height
        top, bottom = box.y0 + trim, box.y1 - trim
        if bands and top < band_end:
            bands[-1].append(box)
            band_end = max(band_end, bottom)
        else:
            bands.append([box])
            band_end = bottom
    return bands


def _by_rows(boxes: list[_Box]) -> list[int]:
    """Rows top to bottom, each row left to right.

    A box much taller than the text round it (a drop capital, an initial set
    two or three lines deep) is read with the row its top is level with, not
    the one its centre is: it begins the paragraph beside it.
    """
    typical = _median_height(boxes)

    def reading_y(box: _Box) -> float:
        if box.height > DROP_CAP_RATIO * typical:
            return min(box.center_y, box.y0 + typical / 2)
        return box.center_y

    rows: list[list[_Box]] = []
    for box in sorted(boxes, key=reading_y):
        if rows and _same_row(rows[-1], box):
            rows[-1].append(box)
        else:
            rows.append([box])
    return [b.index for row in rows for b in sorted(row, key=lambda b: b.x0)]


def _same_row(row: list[_Box], box: _Box) -> bool:
    if any(b.height > DROP_CAP_RATIO * box.height for b in row):
        # Beside a drop capital: the row is the line level with its top.
        tall = max(row, key=lambda b: b.height)
        return tall.y0 - box.height / 2 <= box.center_y <= tall.y0 + 1.5 * box.height
    top = statistics.median(b.y0 for b in row)
    bottom = statistics.median(b.y1 for b in row)
    overlap = min(bottom, box.y1) - max(top, box.y0)
    return overlap >= SAME_ROW * max(min(bottom - top, box.height), 1e-9)


def _merge_intervals(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# -- text and Markdown --------------------------------------------------------------


def _blocks(lines: Sequence[TextLine]) -> list[list[str]]:
    if not lines:
        return []
    boxes = _upright_boxes(lines, _text_direction(lines))
    return [rows for rows, _ in _blocks_with_heights(lines, boxes)]


def _blocks_with_heights(
    lines: Sequence[TextLine], boxes: list[_Box]
) -> list[tuple[list[str], list[float]]]:
    """Group consecutive lines into blocks of visual rows.

    Returns per block its rows' text and its lines' heights.
    """
    line_height = _median_height(boxes)
    blocks: list[tuple[list[str], list[float]]] = []
    previous: _Box | None = None
    for line, box in zip(lines, boxes, strict=True):
        text = line.text.strip()
        if not text:
            continue
        if previous is None:
            blocks.append(([text], [box.height]))
        elif _continues_row(previous, box):
            # A drop capital is the first letter of the word beside it: "S" + "he".
            glue = "" if _is_initial(blocks[-1][0][-1], previous, box) else " "
            blocks[-1][0][-1] += glue + text
            blocks[-1][1].append(box.height)
        elif _starts_block(previous, box, line_height):
            blocks.append(([text], [box.height]))
        else:
            blocks[-1][0].append(text)
            blocks[-1][1].append(box.height)
        previous = box
    return blocks


def _continues_row(previous: _Box, box: _Box) -> bool:
    overlap = min(previous.y1, box.y1) - max(previous.y0, box.y0)
    same_row = overlap >= SAME_ROW * max(min(previous.height, box.height), 1e-9)
    return same_row and box.x0 >= previous.x0


def _is_initial(row_so_far: str, previous: _Box, box: _Box) -> bool:
    return (
        len(row_so_far) == 1
        and row_so_far.isalpha()
        and previous.height > DROP_CAP_RATIO * box.height
        and box.x0 - previous.x1 < previous.height
    )


def _starts_block(previous: _Box, box: _Box, line_height: float) -> bool:
    if box.center_y < previous.center_y:
        return True  # jumped back up: the next column or a new block
    if box.y0 - previous.y1 > PARAGRAPH_GAP * line_height:
        return True
    if box.x0 > previous.x1 or box.x1 < previous.x0:
        return True  # no horizontal overlap: another column or a side note
    small, large = sorted((previous.height, box.height))
    return large > SIZE_CHANGE * max(small, 1e-9)


def _join_rows(rows: list[str]) -> str:
    """Join a paragraph's rows, undoing hyphenation at line ends (``docu-`` + ``ment``)."""
    text = rows[0]
    for row in rows[1:]:
        if len(text) >= 2 and text.endswith("-") and text[-2].isalpha() and row[:1].islower():
            text = text[:-1] + row
        else:
            text = text + " " + row
    return text


def _is_bullet(row: str) -> bool:
    return row.startswith(_BULLETS)


def _markdown_list(rows: list[str]) -> str:
    """Rows before the first bullet stay a paragraph; rows after a bullet continue it."""
    intro: list[str] = []
    items: list[list[str]] = []
    for row in rows:
        if _is_bullet(row):
            items.append([row.lstrip("".join(_BULLETS)).strip()])
        elif items:
            items[-1].append(row)
        else:
            intro.append(row)
    listing = "\n".join("- " + _join_rows(item) for item in items)
    return f"{_escape_block_start(_join_rows(intro))}\n\n{listing}" if intro else listing


def _escape_block_start(text: str) -> str:
    # A paragraph that happens to start with Markdown syntax must stay a paragraph.
    if text.startswith(("#", ">", "|")) or text[:2] in ("- ", "+ ", "* "):
        return "\\" + text
    return text
