"""Reading order, page text and Markdown on synthetic line layouts."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docintel.document.reading_order import order_lines, page_markdown, page_text
from docintel.document.rotation import rotate_polygon, rotated_size
from docintel.geometry import Polygon, TextLine

PAGE_W, PAGE_H = 1000.0, 1400.0
LINE_H = 20.0  # body text height
PITCH = 28.0  # baseline to baseline


def line(text: str, x0: float, y0: float, x1: float, y1: float | None = None) -> TextLine:
    y1 = y0 + LINE_H if y1 is None else y1
    return TextLine(text, (x0, y0, x1, y0, x1, y1, x0, y1), 0.99)


def texts(lines: list[TextLine]) -> list[str]:
    return [item.text for item in lines]


def shuffled(lines: list[TextLine], seed: int = 7) -> list[TextLine]:
    copy = list(lines)
    random.Random(seed).shuffle(copy)
    return copy


def two_columns(rows: int = 6, top: float = 200.0) -> list[TextLine]:
    """Left column L0.., right column R0.., on the same baselines, with a gutter."""
    left = [line(f"L{i}", 80, top + PITCH * i, 470 - (i % 3) * 30) for i in range(rows)]
    right = [line(f"R{i}", 530, top + PITCH * i, 920 - (i % 2) * 40) for i in range(rows)]
    return left + right


def turn(lines: list[TextLine], angle: int) -> tuple[list[TextLine], float, float]:
    """The same page scanned turned by `angle` degrees counter-clockwise."""
    width, height = rotated_size(PAGE_W, PAGE_H, angle)
    moved = [
        TextLine(item.text, rotate_polygon(item.polygon, PAGE_W, PAGE_H, angle), item.confidence)
        for item in lines
    ]
    return moved, width, height


def skew(lines: list[TextLine], degrees: float) -> list[TextLine]:
    """Tilt the page counter-clockwise around its centre (the polygons stay clockwise)."""
    a = math.radians(degrees)
    cx, cy = PAGE_W / 2, PAGE_H / 2

    def move(polygon: Polygon) -> Polygon:
        out: list[float] = []
        for i in range(0, 8, 2):
            x, y = polygon[i] - cx, polygon[i + 1] - cy
            out += [cx + x * math.cos(a) + y * math.sin(a), cy - x * math.sin(a) + y * math.cos(a)]
        return (out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7])

    return [TextLine(item.text, move(item.polygon), item.confidence) for item in lines]


# -- order_lines ----------------------------------------------------------------------


def test_empty_input() -> None:
    assert order_lines([], PAGE_W, PAGE_H) == []
    assert page_text([]) == ""
    assert page_markdown([]) == ""


def test_two_columns_are_read_column_by_column() -> None:
    ordered = order_lines(shuffled(two_columns()), PAGE_W, PAGE_H)
    assert texts(ordered) == [f"L{i}" for i in range(6)] + [f"R{i}" for i in range(6)]


def test_header_spanning_both_columns_comes_first_and_footer_last() -> None:
    header = line("Title", 300, 100, 700, 140)
    intro = line("Intro", 80, 160, 920)
    footer = line("Footer", 80, 420, 920)
    ordered = order_lines(shuffled([*two_columns(), header, intro, footer]), PAGE_W, PAGE_H)
    assert texts(ordered) == (
        ["Title", "Intro"] + [f"L{i}" for i in range(6)] + [f"R{i}" for i in range(6)] + ["Footer"]
    )


def test_columns_of_different_lengths_and_a_heading_inside_a_column() -> None:
    left = [line(f"L{i}", 80, 200 + PITCH * i, 470) for i in range(8)]
    right = [line("Heading", 530, 200, 700, 230)] + [
        line(f"R{i}", 530, 240 + PITCH * i, 920) for i in range(3)
    ]
    ordered = order_lines(shuffled(left + right), PAGE_W, PAGE_H)
    assert texts(ordered) == [f"L{i}" for i in range(8)] + ["Heading", "R0", "R1", "R2"]


def test_heading_under_one_column_belongs_to_the_full_width_block_below() -> None:
    """A section heading after two columns is read after both of them."""
    body = two_columns(rows=5)
    heading = line("More", 80, 200 + PITCH * 5 + 25, 250)
    below = [line(f"W{i}", 80, 200 + PITCH * 6 + 25 + PITCH * i, 920) for i in range(2)]
    ordered = order_lines(shuffled([*body, heading, *below]), PAGE_W, PAGE_H)
    assert texts(ordered) == (
        [f"L{i}" for i in range(5)] + [f"R{i}" for i in range(5)] + ["More", "W0", "W1"]
    )


def test_three_columns() -> None:
    columns = [
        [line(f"{name}{i}", x, 200 + PITCH * i, x + 260) for i in range(4)]
        for name, x in (("A", 60), ("B", 370), ("C", 680))
    ]
    ordered = order_lines(shuffled([item for col in columns for item in col]), PAGE_W, PAGE_H)
    assert texts(ordered) == [f"{n}{i}" for n in "ABC" for i in range(4)]


def test_single_column_with_slight_skew_keeps_its_order() -> None:
    # Indented first lines, so reading a "row" of overlapping boxes by x would break it.
    column = [
        line(f"P{i}", 100 + (40 if i % 3 == 0 else 0), 100 + PITCH * i, 900 - (i % 4) * 50)
        for i in range(25)
    ]
    for degrees in (-2.0, 1.5, 3.0):
        ordered = order_lines(shuffled(skew(column, degrees)), PAGE_W, PAGE_H)
        assert texts(ordered) == [f"P{i}" for i in range(25)], degrees


def test_skewed_two_columns_keep_their_gutter() -> None:
    # Tilted by 4 degrees, the columns' boxes shift sideways by more than the gutter
    # from top to bottom: only deskewing keeps the gutter visible.
    page = two_columns(rows=30, top=100)
    ordered = order_lines(shuffled(skew(page, 4.0)), PAGE_W, PAGE_H)
    assert texts(ordered) == [f"L{i}" for i in range(30)] + [f"R{i}" for i in range(30)]


def test_pieces_of_one_row_are_read_left_to_right() -> None:
    # A row split into boxes, slightly misaligned, then a row below.
    row = [
        line("c", 520, 101, 700),
        line("a", 100, 100, 250),
        line("b", 262, 103, 500),
        line("d", 720, 99, 800),
    ]
    below = [line("e", 100, 100 + PITCH, 600)]
    assert texts(order_lines(row + below, PAGE_W, PAGE_H)) == ["a", "b", "c", "d", "e"]


def test_large_type_columns_on_a_narrow_page() -> None:
    # 40 px type in 250 px columns: narrow in line heights, but each column is a good
    # share of the 600 px page, so still columns.
    rows = [(f"{name}{i}", x, 60 + 56 * i) for name, x in (("L", 30), ("R", 320)) for i in range(4)]
    lines = [line(text, x, y, x + 250, y + 40) for text, x, y in rows]
    ordered = order_lines(shuffled(lines), 600, 800)
    assert texts(ordered) == [f"L{i}" for i in range(4)] + [f"R{i}" for i in range(4)]


def test_narrow_table_columns_are_read_row_by_row() -> None:
    cells = []
    for r in range(4):
        y = 300 + PITCH * r
        cells += [
            line(f"n{r}", 100, y, 160),
            line(f"q{r}", 300, y, 340),
            line(f"p{r}", 500, y, 580),
        ]
    ordered = order_lines(shuffled(cells), PAGE_W, PAGE_H)
    assert texts(ordered) == [f"{c}{r}" for r in range(4) for c in "nqp"]


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_turned_page_is_ordered_like_the_upright_one(angle: int) -> None:
    header = line("Title", 300, 100, 700, 140)
    page = [header, *two_columns()]
    moved, width, height = turn(page, angle)
    ordered = order_lines(shuffled(moved), width, height)
    assert texts(ordered) == ["Title"] + [f"L{i}" for i in range(6)] + [f"R{i}" for i in range(6)]


boxes = st.tuples(st.floats(0, 900), st.floats(0, 1300), st.floats(5, 400), st.floats(5, 60)).map(
    lambda b: line("x", b[0], b[1], b[0] + b[2], b[1] + b[3])
)


@settings(max_examples=60, deadline=None)
@given(st.lists(boxes, max_size=40))
def test_order_is_a_permutation(lines: list[TextLine]) -> None:
    ordered = order_lines(lines, PAGE_W, PAGE_H)
    assert sorted(map(id, ordered)) == sorted(map(id, lines))


# -- page_text ------------------------------------------------------------------------


def test_page_text_joins_rows_and_separates_paragraphs() -> None:
    lines = [
        line("First line of a", 100, 100, 800),
        line("paragraph.", 100, 100 + PITCH, 300),
        line("Next paragraph", 100, 100 + 3 * PITCH, 700),
        line("Name:", 100, 100 + 4 * PITCH, 180),
        line("Ada", 400, 100 + 4 * PITCH, 460),
    ]
    assert page_text(lines) == "First line of a\nparagraph.\n\nNext paragraph\nName: Ada"


def test_page_text_separates_columns() -> None:
    text = page_text(order_lines(two_columns(rows=2), PAGE_W, PAGE_H))
    assert text == "L0\nL1\n\nR0\nR1"


def test_page_text_of_a_turned_page() -> None:
    moved, width, height = turn(two_columns(rows=2), 90)
    assert page_text(order_lines(moved, width, height)) == "L0\nL1\n\nR0\nR1"


# -- page_markdown ----------------------------------------------------------------------


def test_markdown_paragraphs_headings_and_lists() -> None:
    lines = [
        line("A Big Title", 100, 60, 600, 110),
        line("Body text that is hyphen-", 100, 140, 800),
        line("ated across lines and", 100, 140 + PITCH, 800),
        line("continues here.", 100, 140 + 2 * PITCH, 400),
        line("# not a heading", 100, 140 + 4 * PITCH, 400),
        line("Features:", 100, 140 + 6 * PITCH, 300),
        line("• fast", 100, 140 + 7 * PITCH, 300),
        line("• small and", 100, 140 + 8 * PITCH, 300),
        line("simple", 130, 140 + 9 * PITCH, 300),
    ]
    assert page_markdown(lines) == (
        "## A Big Title\n\n"
        "Body text that is hyphenated across lines and continues here.\n\n"
        "\\# not a heading\n\n"
        "Features:\n\n"
        "- fast\n"
        "- small and simple\n"
    )


# -- two columns beside a drop capital or below a narrower block -----------------------

_LEFT = [
    "he sighed. She had not",
    "expected the day to end",
    "like this, with rain on",
    "the windows and the",
    "lamps already lit in the",
    "street below her room.",
]
_RIGHT = [
    "cause of her sadness. Gently, sim-",
    "ply, the evening settled over",
    "the town and its bridges and",
    "its long quiet avenues where",
    "the trams had stopped early",
    "nothing moved except the rain.",
]


def _placed_pdf(path: Path, items: list[tuple[float, float, float, str]]) -> Path:
    """A page with each text at (x, top-down y, size) in points."""
    from tests.fixtures.documents import PdfPage, _pdf_string, write_pdf

    ops = bytearray()
    for x, y, size, text in items:
        ops += b"BT /F1 %.1f Tf 1 0 0 1 %.1f %.1f Tm " % (size, x, 792 - y)
        ops += _pdf_string(text) + b" Tj ET\n"
    return write_pdf(path, [PdfPage(extra_content=bytes(ops))])


def _two_columns(path: Path, *, drop_cap: bool) -> Path:
    items = [(150.0, 40.0, 20.0, "Evening in the Old Town")]
    if drop_cap:
        # Three lines deep, its top level with the first line of the left column.
        items.append((72.0, 110.0, 48.0, "S"))
        items += [(110.0, 80.0 + 13 * k, 10.0, t) for k, t in enumerate(_LEFT[:3])]
        items += [(72.0, 80.0 + 13 * k, 10.0, t) for k, t in enumerate(_LEFT[3:], start=3)]
    else:
        items += [
            (160.0, 62.0, 10.0, "A centred abstract, narrower than the page, across the gutter.")
        ]
        items += [(72.0, 80.0 + 13 * k, 10.0, "S" * (k == 0) + t) for k, t in enumerate(_LEFT)]
    items += [(300.0, 80.0 + 13 * k, 10.0, t) for k, t in enumerate(_RIGHT)]
    return _placed_pdf(path, items)


def _read(pdf: Path, scanned: bool) -> str:
    from docintel.document.render import render_page
    from docintel.document.textlayer import extract_text_lines

    rendered = render_page(pdf, "application/pdf", 1, 150, max_page_pixels=10**9)
    if scanned:
        from docintel.engines.base import EngineConfig
        from docintel.engines.registry import get_ocr_engine

        lines = get_ocr_engine(EngineConfig(name="rapidocr")).recognize([rendered.image])[0]
    else:
        lines = extract_text_lines(pdf, 1, rendered.dpi)
    return page_text(order_lines(lines, rendered.image.width, rendered.image.height))


@pytest.mark.parametrize("scanned", [False, True], ids=["text-layer", "scan"])
@pytest.mark.parametrize("drop_cap", [True, False], ids=["drop-cap", "centred-block"])
def test_two_columns_below_a_narrower_block_read_column_by_column(
    tmp_path: Path, scanned: bool, drop_cap: bool
) -> None:
    text = _read(_two_columns(tmp_path / "page.pdf", drop_cap=drop_cap), scanned)
    flat = " ".join(text.split())
    assert "She sighed. She had not expected the day" in flat, text
    left_end, right_start = flat.index("street below her room."), flat.index("cause of her")
    assert left_end < right_start, text  # the left column whole, then the right
    assert "She had not cause" not in flat and "Evening in the Old Town" in flat.split("She")[0]
