"""Tables as data: merged cells, rows and Markdown follow the policy the README states."""

from __future__ import annotations

import pytest

from docintel.document.tables import Cell, Table, to_markdown


def _quarterly() -> Table:
    # | Region | 2024 (spans 2) |        two header rows; "Region" spans both
    # |        | H1   | H2      |
    # | North  | 10   | 12      |
    # | South  | 7    |  (empty)|
    return Table(
        cells=(
            Cell(0, 0, "Region", row_span=2),
            Cell(0, 1, "2024", col_span=2),
            Cell(1, 1, "H1"),
            Cell(1, 2, "H2"),
            Cell(2, 0, "North"),
            Cell(2, 1, "10"),
            Cell(2, 2, "12"),
            Cell(3, 0, "South"),
            Cell(3, 1, "7"),
        ),
        header_rows=2,
    )


def test_merged_cells_fill_every_slot_they_cover_in_rows() -> None:
    table = _quarterly()
    assert table.shape == (4, 3)
    assert table.rows == [
        ["Region", "2024", "2024"],
        ["Region", "H1", "H2"],
        ["North", "10", "12"],
        ["South", "7", ""],
    ]


def test_header_rows_join_into_one_markdown_header() -> None:
    assert _quarterly().markdown == (
        "| Region | 2024 / H1 | 2024 / H2 |\n"
        "| --- | --- | --- |\n"
        "| North | 10 | 12 |\n"
        "| South | 7 |  |"
    )


def test_markdown_escapes_pipes_and_newlines_and_needs_no_header() -> None:
    markdown = to_markdown([["a|b", "two\nlines"], ["", "x"]])
    assert markdown.splitlines() == [
        "|  |  |",
        "| --- | --- |",
        "| a\\|b | two lines |",
        "|  | x |",
    ]
    assert to_markdown([]) == ""


@pytest.mark.parametrize(
    ("cells", "kwargs"),
    [
        ((Cell(0, 0, "x", row_span=0),), {}),
        ((Cell(-1, 0, "x"),), {}),
        ((Cell(0, 0, "x"),), {"header_rows": 2}),
        ((Cell(2, 2, "x"),), {"shape": (2, 2)}),
    ],
)
def test_impossible_tables_are_refused(cells: tuple[Cell, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Table(cells=cells, **kwargs)  # type: ignore[arg-type]


def test_a_large_table_stays_rectangular() -> None:
    cells = tuple(Cell(r, c, f"{r}.{c}") for r in range(300) for c in range(5) if (r + c) % 7)
    rows = Table(cells=cells, header_rows=1).rows
    assert len(rows) == 300 and {len(row) for row in rows} == {5}
    assert rows[0][0] == "" and rows[299][4] == "299.4"
