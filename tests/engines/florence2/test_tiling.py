"""Tile grid, coordinate mapping and overlap merging: pure geometry, no model."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docintel.engines.florence2.tiling import (
    Tile,
    TileLine,
    axis_starts,
    dedupe,
    join_text,
    make_line,
    merge_tile_lines,
    reading_order,
    split_tile,
    tile_grid,
)
from docintel.geometry import Polygon

sides = st.integers(min_value=1, max_value=5000)


def rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def line_in(
    text: str, box: tuple[float, float, float, float], tile: Tile, page: tuple[int, int]
) -> TileLine:
    return make_line(text, rect(*box), tile, page)


# --- grid ---------------------------------------------------------------------------


def test_small_page_is_one_tile() -> None:
    assert tile_grid(800, 600, 1024, 128) == [Tile(0, 0, 800, 600)]


def test_letter_page_at_200_dpi() -> None:
    tiles = tile_grid(1700, 2200, 1024, 128)
    assert len(tiles) == 6  # 2 columns x 3 rows
    assert {t.width for t in tiles} == {1024} and {t.height for t in tiles} == {1024}
    assert tiles[0].box == (0, 0, 1024, 1024) and tiles[-1].box == (676, 1176, 1700, 2200)


@given(length=sides, size=st.integers(32, 2048), overlap=st.integers(0, 512))
def test_axis_starts_cover_with_overlap(length: int, size: int, overlap: int) -> None:
    overlap = min(overlap, size // 2 - 1) if size > 2 else 0
    starts = axis_starts(length, size, overlap)
    side = min(size, length)
    assert starts[0] == 0 and starts[-1] + side == length
    for a, b in itertools.pairwise(starts):
        assert a < b
        assert a + side - b >= overlap - 1  # rounding may cost one pixel


@settings(max_examples=200, deadline=None)  # tiny tiles on a big page: ~90,000 tiles
@given(
    width=sides,
    height=sides,
    size=st.integers(32, 2048),
    overlap=st.integers(0, 400),
    fx=st.floats(0, 1, exclude_max=True),
    fy=st.floats(0, 1, exclude_max=True),
)
def test_every_page_point_is_covered(
    width: int, height: int, size: int, overlap: int, fx: float, fy: float
) -> None:
    overlap = min(overlap, size // 2 - 1)
    tiles = tile_grid(width, height, size, overlap)
    x, y = int(fx * width), int(fy * height)
    assert any(t.x0 <= x < t.x1 and t.y0 <= y < t.y1 for t in tiles)
    for t in tiles:
        assert 0 <= t.x0 < t.x1 <= width and 0 <= t.y0 < t.y1 <= height
        assert t.width <= size and t.height <= size


@given(
    w=st.integers(16, 3000),
    h=st.integers(16, 3000),
    min_size=st.integers(16, 512),
    overlap=st.integers(0, 200),
    fx=st.floats(0, 1, exclude_max=True),
    fy=st.floats(0, 1, exclude_max=True),
)
def test_split_tile_covers_parent_and_shrinks(
    w: int, h: int, min_size: int, overlap: int, fx: float, fy: float
) -> None:
    parent = Tile(100, 50, 100 + w, 50 + h)
    subs = split_tile(parent, min_size, overlap)
    if not subs:
        assert w < 2 * min_size + 2 or h < 2 * min_size + 2
        return
    assert len(subs) in (2, 4)
    x, y = parent.x0 + int(fx * w), parent.y0 + int(fy * h)
    assert any(t.x0 <= x < t.x1 and t.y0 <= y < t.y1 for t in subs)
    for t in subs:
        assert parent.x0 <= t.x0 and t.x1 <= parent.x1 and parent.y0 <= t.y0 and t.y1 <= parent.y1
        assert t.width * t.height < w * h
        assert t.width >= min(min_size, w) and t.height >= min(min_size, h)


def test_split_tile_recursion_stops_at_min_size() -> None:
    tiles, leaves = [Tile(0, 0, 1024, 1024)], []
    while tiles:
        tile = tiles.pop()
        subs = split_tile(tile, 256, 128)
        (tiles.extend(subs) if subs else leaves.append(tile))
    assert len(leaves) == 16 and all(256 <= t.width < 512 for t in leaves)


def test_split_tile_halves_only_the_long_side() -> None:
    assert [t.box for t in split_tile(Tile(0, 0, 1000, 300), 256, 100)] == [
        (0, 0, 550, 300),
        (450, 0, 1000, 300),
    ]


# --- mapping --------------------------------------------------------------------------


def test_to_page_known_offset_and_scale() -> None:
    tile = Tile(500, 1000, 1524, 2024)
    assert tile.to_page((0, 0, 768, 0, 768, 768, 0, 768), (768, 768)) == rect(500, 1000, 1524, 2024)
    quad = (10, 20, 30, 20, 30, 40, 10, 40)
    assert tile.to_page(quad, (1024, 1024)) == rect(510, 1020, 530, 1040)
    # a 200x50 tile described in a 100x25 frame: scale 2 on both axes
    assert Tile(100, 0, 300, 50).to_page((50, 10, 100, 10, 100, 20, 50, 20), (100, 25)) == rect(
        200, 20, 300, 40
    )


@given(
    x0=st.integers(0, 4000),
    y0=st.integers(0, 4000),
    w=st.integers(1, 2000),
    h=st.integers(1, 2000),
    sw=st.integers(1, 2000),
    sh=st.integers(1, 2000),
    u=st.floats(0, 1),
    v=st.floats(0, 1),
)
def test_to_page_is_affine(
    x0: int, y0: int, w: int, h: int, sw: int, sh: int, u: float, v: float
) -> None:
    tile = Tile(x0, y0, x0 + w, y0 + h)
    quad = (u * sw, v * sh) * 4
    mapped = tile.to_page(quad, (sw, sh))
    assert mapped[0] == pytest.approx(x0 + u * w) and mapped[1] == pytest.approx(y0 + v * h)
    corners = tile.to_page((0, 0, sw, 0, sw, sh, 0, sh), (sw, sh))
    assert corners == pytest.approx(rect(x0, y0, x0 + w, y0 + h))


# --- merging --------------------------------------------------------------------------

PAGE = (2000, 1000)
LEFT, RIGHT = Tile(0, 0, 1100, 1000), Tile(900, 0, 2000, 1000)


def test_clipped_sides_are_inner_borders_only() -> None:
    at_right_border = line_in("abc", (800, 100, 1099, 120), LEFT, PAGE)
    at_page_edge = line_in("abc", (0, 100, 300, 120), LEFT, PAGE)
    assert at_right_border.clipped == {"right"}
    assert at_page_edge.clipped == frozenset()


def test_line_in_overlap_seen_by_both_tiles_comes_out_once() -> None:
    a = line_in("Invoice 2024-001", (950, 100, 1080, 120), LEFT, PAGE)
    b = line_in("Invoice 2024-0O1", (951, 101, 1079, 121), RIGHT, PAGE)
    assert [ln.text for ln in merge_tile_lines([a, b])] == ["Invoice 2024-001"]


def test_fragment_at_border_yields_to_whole_reading() -> None:
    fragment = line_in("Total amou", (950, 300, 1100, 320), LEFT, PAGE)
    whole = line_in("Total amount due", (950, 300, 1200, 320), RIGHT, PAGE)
    assert [ln.text for ln in merge_tile_lines([fragment, whole])] == ["Total amount due"]


def test_line_cut_by_border_is_joined_once() -> None:
    left = line_in("The quick brown fo", (600, 500, 1100, 520), LEFT, PAGE)
    right = line_in("own fox jumps", (900, 500, 1300, 520), RIGHT, PAGE)
    merged = merge_tile_lines([left, right])
    assert [ln.text for ln in merged] == ["The quick brown fox jumps"]
    assert merged[0].bbox == (600, 500, 1300, 520)
    assert merged[0].tiles == {LEFT, RIGHT}


def test_lines_on_other_baselines_are_not_joined() -> None:
    left = line_in("first line", (600, 500, 1100, 520), LEFT, PAGE)
    right = line_in("second line", (900, 560, 1300, 580), RIGHT, PAGE)
    assert [ln.text for ln in merge_tile_lines([left, right])] == ["first line", "second line"]


def test_vertically_cut_junk_is_dropped() -> None:
    top, bottom = Tile(0, 0, 1000, 600), Tile(0, 400, 1000, 1000)
    junk = line_in("~~ ~", (100, 580, 600, 600), top, (1000, 1000))
    whole = line_in("Amount payable", (100, 580, 600, 610), bottom, (1000, 1000))
    assert [ln.text for ln in merge_tile_lines([junk, whole])] == ["Amount payable"]


def test_repeated_line_in_one_tile_is_dropped() -> None:
    a = line_in("Page 1", (100, 100, 200, 120), LEFT, PAGE)
    b = line_in("Page 1", (100, 100, 200, 120), LEFT, PAGE)
    assert len(dedupe([a, b])) == 1


def test_join_text_overlap_and_fallback() -> None:
    assert join_text("The quick brown fo", "own fox", 5) == "The quick brown fox"
    assert join_text("abc", "def", 0) == "abc def"
    # readings that disagree inside the overlap: trust the geometry
    assert join_text("Total amount d", "XXXX due now", 4) == "Total amount d due now"
    # repetitive text matches at many lengths; the geometry picks the right one
    assert join_text("Name ........", "...... 12", 4) == "Name .......... 12"  # 8 + 6 - 4 dots


def test_reading_order_rows_then_columns() -> None:
    tile = Tile(0, 0, 2000, 1000)
    lines = [
        line_in("b", (500, 102, 600, 120), tile, PAGE),
        line_in("c", (0, 200, 100, 220), tile, PAGE),
        line_in("a", (0, 100, 100, 118), tile, PAGE),
    ]
    assert [ln.text for ln in reading_order(lines)] == ["a", "b", "c"]


# --- simulated tiled reading: every line exactly once -----------------------------------


Box = tuple[int, int, int, int]
Page = tuple[int, int, int, int, list[tuple[str, Box]]]


def _read_tile(text: str, box: Box, tile: Tile, page: tuple[int, int]) -> TileLine | None:
    """What an ideal OCR returns for a line seen through a tile."""
    x0, y0, x1, y1 = box
    ix0, iy0, ix1, iy1 = max(x0, tile.x0), max(y0, tile.y0), min(x1, tile.x1), min(y1, tile.y1)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    if y0 < tile.y0 or y1 > tile.y1:  # glyphs cut through: unreadable junk
        return line_in("#%&", (ix0, iy0, ix1, iy1), tile, page)
    char_w = (x1 - x0) / len(text)
    visible = [c for i, c in enumerate(text) if ix0 <= x0 + (i + 0.5) * char_w < ix1]
    if not visible:
        return None
    return line_in("".join(visible), (ix0, iy0, ix1, iy1), tile, page)


@st.composite
def pages(draw: st.DrawFn) -> Page:
    height_px = draw(st.integers(12, 40))
    overlap = draw(st.integers(3 * height_px, 6 * height_px))
    tile = draw(st.integers(max(3 * overlap, 10 * height_px), 1600))
    width = draw(st.integers(200, 3500))
    height = draw(st.integers(200, 3000))
    char_w = round(0.55 * height_px)
    rng = random.Random(draw(st.integers(0, 2**32)))
    lines = []
    y = 10
    while y + height_px + 10 < height:
        max_chars = (width - 20) // char_w
        if max_chars >= 3 and draw(st.booleans()):
            n = draw(st.integers(3, min(max_chars, 400)))
            x0 = draw(st.integers(10, width - 10 - n * char_w))
            # Distinct characters: the merge is tested, not luck with repeated text.
            text = "".join(chr(0x4E00 + c) for c in rng.sample(range(5000), n))
            lines.append((text, (x0, y, x0 + n * char_w, y + height_px)))
        y += draw(st.integers(round(2.5 * height_px), 6 * height_px))
    return width, height, tile, overlap, lines


@settings(max_examples=60, deadline=None)
@given(pages())
def test_tiled_reading_merges_to_each_line_once(page: Page) -> None:
    width, height, size, overlap, lines = page
    tiles = tile_grid(width, height, size, overlap)
    readings = [
        r
        for text, box in lines
        for tile in tiles
        if (r := _read_tile(text, box, tile, (width, height))) is not None
    ]
    merged = merge_tile_lines(readings)
    assert [ln.text for ln in merged] == [text for text, _ in lines]
    for got, (_, box) in zip(merged, lines, strict=True):
        # A sliver under a quarter line height past a whole reading is not worth a join.
        assert got.bbox == pytest.approx(box, abs=1 + 0.25 * (box[3] - box[1]))


# --- cost: merging a dense page compares neighbours, not all pairs ---------------------


def _dense_page(
    width: int, height: int, columns: int
) -> tuple[list[tuple[str, Box]], list[TileLine]]:
    """Columns of 20 px lines every 24 px, read through 1024 px tiles by the ideal OCR."""
    rng = random.Random(0)
    char_w, column_w = 11, (width - 100) // columns
    lines: list[tuple[str, Box]] = []
    for y in range(50, height - 70, 24):
        for c in range(columns):
            n = (column_w - 40) // char_w
            x0 = 50 + c * column_w
            text = "".join(chr(0x4E00 + k) for k in rng.sample(range(5000), n))
            lines.append((text, (x0, y, x0 + n * char_w, y + 20)))
    tiles = tile_grid(width, height, 1024, 128)
    readings = [
        r
        for text, box in lines
        for tile in tiles
        if (r := _read_tile(text, box, tile, (width, height))) is not None
    ]
    return lines, readings


def test_merging_a_dense_page_compares_neighbours_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from docintel.engines.florence2 import tiling

    calls = {"pairs": 0}
    for name in ("_same_reading", "_covers", "_joinable"):
        real = getattr(tiling, name)

        def counted(a: TileLine, b: TileLine, real: Callable[..., bool] = real) -> bool:
            calls["pairs"] += 1
            return real(a, b)

        monkeypatch.setattr(tiling, name, counted)
    # Three columns on an A3-sized scan: ~540 lines, ~1,300 readings from 20 tiles.
    lines, readings = _dense_page(3400, 4400, 3)
    assert len(readings) > 1200

    merged = merge_tile_lines(readings)

    assert sorted(ln.text for ln in merged) == sorted(text for text, _ in lines)
    # All pairs would be ~800,000 tests for one dedupe pass (and joining restarted
    # a full scan after every join: minutes of CPU per page); neighbours are dozens.
    assert calls["pairs"] < 100 * len(readings)
