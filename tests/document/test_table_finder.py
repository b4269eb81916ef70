"""Tables found and read from page geometry: born-digital and scanned, ruled and not,
and pages that must not give a table."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from docintel.document.render import render_page
from docintel.document.table_finder import find_tables
from docintel.document.table_reader import read_region
from docintel.document.textlayer import extract_text_lines
from docintel.geometry import Region, TextLine
from tests.fixtures.documents import make_text_pdf
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf, scanned

DPI = 150


def _page(path: Path, number: int = 1) -> tuple[Image.Image, list[TextLine]]:
    rendered = render_page(path, "application/pdf", number, DPI, max_page_pixels=10**9)
    return rendered.image, extract_text_lines(path, number, rendered.dpi)


def _read(image: Image.Image, lines: list[TextLine], region: Region) -> list[list[str]]:
    x0, y0, x1, y1 = (int(v) for v in region.bbox)
    left, top = x0 - 6, y0 - 6
    inside = [
        TextLine(line.text, _moved(line, -left, -top), 1.0)
        for line in lines
        if x0 <= (line.bbox[0] + line.bbox[2]) / 2 <= x1
        and y0 <= (line.bbox[1] + line.bbox[3]) / 2 <= y1
    ]
    table = read_region(image.crop((left, top, x1 + 6, y1 + 6)), inside)
    assert table is not None
    return table.rows


def _moved(line: TextLine, dx: float, dy: float) -> tuple[float, ...]:
    return tuple(v + (dx if k % 2 == 0 else dy) for k, v in enumerate(line.polygon))


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
def test_a_born_digital_table_is_found_with_its_cells(tmp_path: Path, ruled: bool) -> None:
    pdf = make_table_pdf(
        tmp_path / "t.pdf",
        [TableSpec(SALES, ruled=ruled, text_above=["Quarterly sales by region"])],
    )
    image, lines = _page(pdf)
    tables = [r for r in find_tables(image, lines) if r.kind == "table"]
    assert len(tables) == 1
    assert _read(image, lines, tables[0]) == [list(row) for row in SALES]  # the empty cell too


def test_a_merged_header_cell_spans_its_columns(tmp_path: Path) -> None:
    rows = [
        ["Item", "Sales", "", "Cost"],
        ["", "2023", "2024", "2024"],
        ["Tea", "10 kg", "12 kg", "$3"],
        ["Coffee", "20 kg", "25 kg", "$9"],
    ]
    pdf = make_table_pdf(tmp_path / "m.pdf", [TableSpec(rows, merge_header=(1, 2))])
    image, lines = _page(pdf)
    (region,) = find_tables(image, lines)
    x0, y0, x1, y1 = (int(v) for v in region.bbox)
    inside = [
        TextLine(line.text, _moved(line, 6 - x0, 6 - y0), 1.0)
        for line in lines
        if y0 <= (line.bbox[1] + line.bbox[3]) / 2 <= y1
    ]
    table = read_region(image.crop((x0 - 6, y0 - 6, x1 + 6, y1 + 6)), inside)
    assert table is not None
    sales = next(c for c in table.cells if c.text == "Sales")
    assert (sales.row, sales.col, sales.col_span) == (0, 1, 2)
    assert table.rows[0] == ["Item", "Sales", "Sales", "Cost"]
    assert table.rows[3] == ["Coffee", "20 kg", "25 kg", "$9"]
    assert table.header_rows == 2  # the spanning header and the sub-headers under it
    assert table.markdown.splitlines()[0] == "| Item | Sales / 2023 | Sales / 2024 | Cost / 2024 |"


def test_a_table_continued_on_the_next_page_is_a_table_on_each(tmp_path: Path) -> None:
    first = [SALES[0], *SALES[1:3]]
    second = [SALES[0], *SALES[3:]]
    pdf = make_table_pdf(tmp_path / "two.pdf", [TableSpec(first), TableSpec(second)])
    for number, expected in ((1, first), (2, second)):
        image, lines = _page(pdf, number)
        (region,) = find_tables(image, lines)
        assert _read(image, lines, region) == [list(r) for r in expected]


def test_a_300_row_table_is_read_whole(tmp_path: Path) -> None:
    rows = [["Id", "Name", "Score"]] + [[str(i), f"item {i}", f"{i * 7 % 100}"] for i in range(299)]
    # On one tall page (a long receipt, a spreadsheet printed to PDF).
    spec = TableSpec(rows, row_height=14.0, font_size=9.0, top=40.0)
    pdf = make_table_pdf(tmp_path / "long.pdf", [spec], page_height=300 * 14.0 + 100)
    rendered = render_page(pdf, "application/pdf", 1, 100, max_page_pixels=10**9)
    lines = extract_text_lines(pdf, 1, rendered.dpi)
    (region,) = find_tables(rendered.image, lines)
    read = _read(rendered.image, lines, region)
    assert len(read) == 300 and read[0] == ["Id", "Name", "Score"] and read[-1][0] == "298"


@pytest.mark.parametrize(
    "text",
    [
        "\n".join(
            "Paragraph text that runs across the whole width of the page, as body text does."
            for _ in range(12)
        ),
        "\n".join(
            f"Left column line {k} of prose here          Right column line {k} of prose text"
            for k in range(14)
        ),
        "\n".join(f"- item number {k} of a plain list" for k in range(10)),
        "\n".join(
            f"{k}. Chapter title number {k}                                        {k * 11}"
            for k in range(1, 12)
        ),
    ],
    ids=["paragraphs", "two-columns", "list", "table-of-contents"],
)
def test_pages_without_tables_give_none(tmp_path: Path, text: str) -> None:
    pdf = make_text_pdf(tmp_path / "p.pdf", [text], font_size=10)
    image, lines = _page(pdf)
    assert [r for r in find_tables(image, lines) if r.kind == "table"] == []


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "unruled"])
def test_a_scanned_table_is_found_and_read_from_ocr_lines(tmp_path: Path, ruled: bool) -> None:
    from docintel.engines.base import EngineConfig
    from docintel.engines.registry import get_ocr_engine

    pdf = make_table_pdf(tmp_path / "s.pdf", [TableSpec(SALES, ruled=ruled, font_size=12)])
    rendered = render_page(pdf, "application/pdf", 1, 200, max_page_pixels=10**9)
    image = scanned(rendered.image, seed=3, angle=0.3)
    lines = get_ocr_engine(EngineConfig(name="rapidocr")).recognize([image])[0]
    tables = [r for r in find_tables(image, lines) if r.kind == "table"]
    assert len(tables) == 1
    read = _read(image, lines, tables[0])
    expected = [cell for row in SALES for cell in row if cell]
    found = [cell.replace(" ", "") for row in read for cell in row if cell]
    hits = sum(1 for cell in expected if cell.replace(" ", "") in found)
    assert hits >= 0.8 * len(expected), read


# -- a spread: a list on one side of the fold, a table on the other ------------------------

_CHECKLIST = ["Yes, at the national level", "Yes, at the regional level", "At the local level"]
_SERVICES = [
    ["Group", "State", "Charities"],
    ["Children", "12", "4"],
    ["Women", "", "7"],  # empty cells: rows with fewer chunks still belong
    ["The elderly", "9", ""],
    ["Migrants", "", "2"],
    ["Refugees", "6", "5"],
]


def _spread(path: Path) -> Path:
    """A landscape spread: the fold is a rule down the middle; a checklist on the left
    shares its baselines with an unruled table on the right."""
    from tests.fixtures.documents import PdfPage, _pdf_string, write_pdf

    ops = bytearray(b"0.8 w 396 20 m 396 592 l S\nBT /F1 11 Tf\n")
    for k, text in enumerate(_CHECKLIST):
        ops += b"1 0 0 1 60 %.1f Tm " % (500 - 22 * (k + 1)) + _pdf_string(text) + b" Tj\n"
    for r, row in enumerate(_SERVICES):
        for c, text in enumerate(row):
            if text:
                x, y = 430 + c * 110, 500 - 22 * r
                ops += b"1 0 0 1 %.1f %.1f Tm " % (x, y) + _pdf_string(text) + b" Tj\n"
    ops += b"ET\n"
    return write_pdf(path, [PdfPage(width=792, height=612, extra_content=bytes(ops))])


@pytest.mark.parametrize("scan", [False, True], ids=["born-digital", "scanned"])
def test_a_table_beside_the_fold_of_a_spread_stays_on_its_side(tmp_path: Path, scan: bool) -> None:
    pdf = _spread(tmp_path / "spread.pdf")
    if scan:
        from docintel.engines.base import EngineConfig
        from docintel.engines.registry import get_ocr_engine

        rendered = render_page(pdf, "application/pdf", 1, 200, max_page_pixels=10**9)
        image = scanned(rendered.image, seed=5, angle=0.2)
        lines = get_ocr_engine(EngineConfig(name="rapidocr")).recognize([image])[0]
    else:
        image, lines = _page(pdf)
    (table,) = [r for r in find_tables(image, lines, exact_boxes=not scan) if r.kind == "table"]
    fold = 396 * image.width / 792
    assert table.bbox[0] > fold  # the checklist left of the fold is no column of it
    read = _read(image, lines, table)
    assert [row[0] for row in read] == [row[0] for row in _SERVICES]  # every row, empty cells too
    if not scan:
        assert read == [list(row) for row in _SERVICES]


def test_a_ruled_table_whose_rows_read_one_cell_each_is_found(tmp_path: Path) -> None:
    """In a scan, the cells OCR could not read (a script it does not know) leave one
    short run a row, as here: no prose page, and its ruled grid is still a table."""
    rows = [["1234", ""], ["", "Tel Aviv"], ["5678", ""], ["", "Haifa"], ["9012", ""]]
    pdf = make_table_pdf(tmp_path / "sparse.pdf", [TableSpec(rows, col_width=160)])
    image, lines = _page(pdf)
    (table,) = [r for r in find_tables(image, lines, exact_boxes=True) if r.kind == "table"]
    assert _read(image, lines, table) == [list(row) for row in rows]
