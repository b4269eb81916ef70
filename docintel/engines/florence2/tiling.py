"""Page tiling for Florence-2: pure geometry, no torch.

Florence-2 squashes every input to 768x768 and its decoder holds 1024
positions, so a whole dense page is both too blurry and too long for one
generation. We cut the page into overlapping tiles, map each tile's boxes back
to page pixels, and merge what the overlaps produced twice or cut in two.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from docintel.geometry import BBox, Polygon


@dataclass(frozen=True, slots=True)
class Tile:
    """A rectangle of the page in page pixels; x1/y1 are exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def to_page(self, quad: Sequence[float], space: tuple[float, float]) -> Polygon:
        """Map points given in a ``space`` (w, h) coordinate frame of this tile to the page.

        Florence-2's post-processor returns coordinates in whatever image size we
        pass it; the engine passes the tile's own size (scale 1), but keeping the
        scale explicit makes the mapping correct for any frame.
        """
        if len(quad) != 8:
            raise ValueError(f"a quad needs 8 numbers, got {len(quad)}")
        sx = self.width / space[0]
        sy = self.height / space[1]
        xs = [self.x0 + float(quad[i]) * sx for i in range(0, 8, 2)]
        ys = [self.y0 + float(quad[i]) * sy for i in range(1, 8, 2)]
        return (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], xs[3], ys[3])


def axis_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``size`` covering [0, length) with at least ``overlap`` shared.

    Tiles are spread evenly so the last one ends exactly at the page edge and
    no tile is a thin sliver (a sliver squashed to 768 px would distort text).
    """
    if length <= size:
        return [0]
    overlap = max(0, min(overlap, size - 1))
    count = math.ceil((length - overlap) / (size - overlap))
    span = length - size
    return [round(i * span / (count - 1)) for i in range(count)]


def tile_grid(width: int, height: int, tile_size: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering the page; a page no larger than one tile is one tile."""
    return grid_in(Tile(0, 0, width, height), tile_size, tile_size, overlap)


def grid_in(region: Tile, tile_w: int, tile_h: int, overlap: int) -> list[Tile]:
    tw = min(tile_w, region.width)
    th = min(tile_h, region.height)
    tiles = []
    for y in axis_starts(region.height, th, overlap):
        for x in axis_starts(region.width, tw, overlap):
            tiles.append(Tile(region.x0 + x, region.y0 + y, region.x0 + x + tw, region.y0 + y + th))
    return tiles


def split_tile(tile: Tile, min_size: int, overlap: int) -> list[Tile]:
    """Halve a tile along each axis that stays >= ``min_size``: 4, 2 or 0 sub-tiles.

    Used when a tile's generation ran out of tokens. Sub-tiles overlap (by at
    most a quarter of the side) so a line on the cut is whole in one of them.
    """

    def half(side: int) -> int:
        ov = min(overlap, side // 4)
        sub = math.ceil((side + ov) / 2)
        return sub if min_size <= sub < side else side

    sub_w, sub_h = half(tile.width), half(tile.height)
    if sub_w == tile.width and sub_h == tile.height:
        return []
    ov = min(overlap, min(tile.width, tile.height) // 4)
    return grid_in(tile, sub_w, sub_h, ov)


# --- merging ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TileLine:
    """A recognised line in page pixels, remembering where it came from."""

    text: str
    polygon: Polygon
    tiles: frozenset[Tile]
    # Sides of the line's box that touch an inner tile border (not a page edge):
    # the text may continue beyond the tile there.
    clipped: frozenset[str] = field(default=frozenset())
    confidence: float = 1.0
    # Computed once: merging asks for it in every pairwise test.
    _bbox: BBox = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        xs = self.polygon[0::2]
        ys = self.polygon[1::2]
        object.__setattr__(self, "_bbox", (min(xs), min(ys), max(xs), max(ys)))

    @property
    def bbox(self) -> BBox:
        return self._bbox


def make_line(
    text: str,
    polygon: Polygon,
    tile: Tile,
    page_size: tuple[int, int],
    confidence: float = 1.0,
) -> TileLine:
    """Clamp a mapped line to its tile and note which inner tile borders it touches."""
    xs = [min(max(v, tile.x0), tile.x1) for v in polygon[0::2]]
    ys = [min(max(v, tile.y0), tile.y1) for v in polygon[1::2]]
    poly: Polygon = (xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], xs[3], ys[3])
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    # Half the line height, at least a few pixels: Florence quantizes
    # coordinates to 1/1000 of the tile, and boxes hug the glyphs loosely.
    margin = max(3.0, 0.5 * (y1 - y0))
    page_w, page_h = page_size
    clipped = set()
    if tile.x0 > 0 and x0 - tile.x0 <= margin:
        clipped.add("left")
    if tile.y0 > 0 and y0 - tile.y0 <= margin:
        clipped.add("top")
    if tile.x1 < page_w and tile.x1 - x1 <= margin:
        clipped.add("right")
    if tile.y1 < page_h and tile.y1 - y1 <= margin:
        clipped.add("bottom")
    return TileLine(text, poly, frozenset({tile}), frozenset(clipped), confidence)


def _area(b: BBox) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a: BBox, b: BBox) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def _overlapping(a: BBox, b: BBox) -> bool:
    """The boxes share some area: a precondition of every dedupe test."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


class _RowIndex:
    """Lines filed by the horizontal bands of the page they span.

    Every merge test needs two lines that overlap vertically, so a line only
    has to be compared with the lines of its own bands, not with the whole
    page: merging stays near linear in the number of readings instead of
    quadratic (dedupe) or cubic (joining), which cost seconds to minutes of
    CPU per dense page.
    """

    BAND = 64.0  # page pixels: a few text lines

    def __init__(self) -> None:
        self._bands: defaultdict[int, dict[int, None]] = defaultdict(dict)

    def _keys(self, box: BBox) -> range:
        return range(math.floor(box[1] / self.BAND), math.floor(box[3] / self.BAND) + 1)

    def add(self, key: int, box: BBox) -> None:
        for band in self._keys(box):
            self._bands[band][key] = None

    def remove(self, key: int, box: BBox) -> None:
        for band in self._keys(box):
            self._bands[band].pop(key, None)

    def near(self, box: BBox) -> Iterator[int]:
        """Keys of lines sharing a band with ``box`` (a superset of those overlapping it)."""
        seen: set[int] = set()
        for band in self._keys(box):
            for key in self._bands.get(band, ()):
                if key not in seen:
                    seen.add(key)
                    yield key


def iou(a: BBox, b: BBox) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def containment(inner: BBox, outer: BBox) -> float:
    """Share of ``inner``'s area that lies inside ``outer``."""
    area = _area(inner)
    return _intersection(inner, outer) / area if area > 0 else 0.0


def _cut_vertically(*lines: TileLine) -> bool:
    # Touching a horizontal border: the glyphs may be cut through, the reading
    # is junk. The overlap guarantees a cleaner reading in the next tile row.
    return any(ln.clipped & {"top", "bottom"} for ln in lines)


def _complementary(left: TileLine, right: TileLine) -> bool:
    """Two pieces of one line cut by a vertical border, each reaching past the other."""
    a, b = left.bbox, right.bbox
    tol = 0.25 * min(a[3] - a[1], b[3] - b[1])
    return (
        not _cut_vertically(left, right)
        and "right" in left.clipped
        and "left" in right.clipped
        and _same_baseline(a, b)
        and a[0] < b[0] - tol
        and a[2] < b[2] - tol
    )


def _same_reading(a: TileLine, b: TileLine) -> bool:
    """Two readings of the same line (from overlapping tiles or a repetition loop)."""
    if iou(a.bbox, b.bbox) < 0.5:
        return False
    if _complementary(a, b) or _complementary(b, a):
        return False  # pieces to be joined, not dropped
    return fuzz.ratio(a.text, b.text) >= 70


def _covers(big: TileLine, small: TileLine) -> bool:
    """``small`` adds nothing: it lies inside ``big`` and is a fragment or a substring of it."""
    if _area(small.bbox) > _area(big.bbox) or containment(small.bbox, big.bbox) < 0.7:
        return False
    if _complementary(big, small) or _complementary(small, big):
        return False
    # A line cut by a tile border reads as a fragment (or as junk when cut
    # through its glyphs): geometry alone decides when the fragment is clipped.
    return bool(small.clipped) or fuzz.partial_ratio(small.text, big.text) >= 80


def _quality(line: TileLine) -> tuple[int, int, float]:
    # Whole lines beat fragments, then longer readings, then bigger boxes.
    return (len(line.clipped), -len(line.text), -_area(line.bbox))


def dedupe(lines: Iterable[TileLine]) -> list[TileLine]:
    """Drop lines that another tile (or a repetition in the same tile) already produced."""
    kept: dict[int, TileLine] = {}  # insertion order is the result order
    index = _RowIndex()
    for key, cand in enumerate(sorted(lines, key=_quality)):
        box = cand.bbox
        # Both tests below need the boxes to share some area.
        near = [k for k in index.near(box) if _overlapping(kept[k].bbox, box)]
        if any(_same_reading(kept[k], cand) or _covers(kept[k], cand) for k in near):
            continue
        # A fragment can rank above the reading that contains it (it touches
        # fewer borders); the containing reading replaces it.
        for k in near:
            if _covers(cand, kept[k]):
                index.remove(k, kept.pop(k).bbox)
        kept[key] = cand
        index.add(key, box)
    return list(kept.values())


def _same_baseline(a: BBox, b: BBox) -> bool:
    ha, hb = a[3] - a[1], b[3] - b[1]
    if ha <= 0 or hb <= 0 or max(ha, hb) > 2 * min(ha, hb):
        return False
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * min(ha, hb)


def _joinable(left: TileLine, right: TileLine) -> bool:
    if left.tiles & right.tiles or _cut_vertically(left, right):
        return False
    if "right" not in left.clipped and "left" not in right.clipped:
        return False
    a, b = left.bbox, right.bbox
    if not _same_baseline(a, b) or not (a[0] < b[0] and a[2] < b[2]):
        return False
    height = min(a[3] - a[1], b[3] - b[1])
    return b[0] <= a[2] + height  # overlapping or at most about one glyph apart


def join_text(left: str, right: str, overlap_chars: float) -> str:
    """Concatenate two readings of one line whose ends may repeat the same characters.

    ``overlap_chars`` is the geometric estimate of how many characters both
    tiles saw; we look for the best textual suffix/prefix match near it and
    fall back to the estimate when the two readings differ.
    """
    if overlap_chars <= 0.5:
        return f"{left.rstrip()} {right.lstrip()}".strip()
    limit = min(len(left), len(right), int(2 * overlap_chars) + 3)
    # Best textual match first; among equals, the one closest to the geometry
    # (repetitive text like "....." matches at many lengths).
    scored = [
        (fuzz.ratio(left[-k:], right[:k]), -abs(k - overlap_chars), k) for k in range(2, limit + 1)
    ]
    if scored:
        score, _, k = max(scored)
        # Two equal characters happen by chance; a longer near-match is the overlap.
        if score == 100 or (score >= 80 and k >= 4):
            return left + right[k:]
    cut = min(len(right), round(overlap_chars))
    return f"{left.rstrip()} {right[cut:].lstrip()}".strip()


def _join(left: TileLine, right: TileLine) -> TileLine:
    a, b = left.bbox, right.bbox
    width = max(1.0, b[2] - b[0])
    overlap_chars = max(0.0, a[2] - b[0]) / width * len(right.text)
    p, q = left.polygon, right.polygon
    # Keep the left line's left corners and the right line's right corners.
    poly: Polygon = (p[0], p[1], q[2], q[3], q[4], q[5], p[6], p[7])
    # Pieces cut vertically are never joined, so only the outer ends matter.
    clipped = ({"left"} & left.clipped) | ({"right"} & right.clipped)
    return TileLine(
        text=join_text(left.text, right.text, overlap_chars),
        polygon=poly,
        tiles=left.tiles | right.tiles,
        clipped=frozenset(clipped),
        confidence=min(left.confidence, right.confidence),
    )


def join_cut_lines(lines: Iterable[TileLine]) -> list[TileLine]:
    """Join pieces of one line that a vertical tile border cut in two (repeatedly: 3+ tiles).

    Leftmost pieces first, each with its leftmost partner; a joined line is
    checked again (it may reach a third tile), and so are its neighbours
    (they may now be able to join it), until no pair is joinable.
    """
    alive: dict[int, TileLine] = {}
    index = _RowIndex()
    todo: list[tuple[float, int]] = []  # (left edge, key): a heap
    keys = itertools.count()

    def add(line: TileLine) -> int:
        key = next(keys)
        alive[key] = line
        index.add(key, line.bbox)
        heapq.heappush(todo, (line.bbox[0], key))
        return key

    for line in sorted(lines, key=lambda ln: ln.bbox[0]):
        add(line)
    while todo:
        _, key = heapq.heappop(todo)
        left = alive.get(key)
        if left is None:
            continue
        # _joinable needs a shared baseline, hence a shared band.
        partners = [
            (alive[k].bbox[0], k)
            for k in index.near(left.bbox)
            if k != key and _joinable(left, alive[k])
        ]
        if not partners:
            continue
        partner = min(partners)[1]
        joined = _join(left, alive[partner])
        for k in (key, partner):
            index.remove(k, alive.pop(k).bbox)
        new = add(joined)
        for k in index.near(joined.bbox):
            if k != new:
                heapq.heappush(todo, (alive[k].bbox[0], k))
    return sorted(alive.values(), key=lambda ln: ln.bbox[0])


def reading_order(lines: Iterable[TileLine]) -> list[TileLine]:
    """Top-to-bottom rows, left-to-right within a row, by line centers."""
    items = sorted(lines, key=lambda ln: (ln.bbox[1] + ln.bbox[3]) / 2)
    rows: list[list[TileLine]] = []
    row_center = 0.0
    for line in items:
        _, y0, _, y1 = line.bbox
        center, height = (y0 + y1) / 2, max(1.0, y1 - y0)
        if rows and abs(center - row_center) <= 0.5 * height:
            rows[-1].append(line)
            row_center = sum((ln.bbox[1] + ln.bbox[3]) / 2 for ln in rows[-1]) / len(rows[-1])
        else:
            rows.append([line])
            row_center = center
    return [line for row in rows for line in sorted(row, key=lambda ln: ln.bbox[0])]


def merge_tile_lines(lines: Iterable[TileLine]) -> list[TileLine]:
    """Dedupe overlaps, join lines cut at tile borders, then put them in reading order."""
    merged = join_cut_lines(dedupe(lines))
    # Joining can make a line that now duplicates a whole reading from a third tile.
    return reading_order(dedupe(merged))
