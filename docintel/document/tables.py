"""A table as data: cells with spans, and the two flat views users read (rows, Markdown).

Every extraction engine, rule-based or a model, returns a ``Table``; the
stage stores its ``cells`` and the views derived here, so every engine's
tables read the same way.

Merged cells: ``cells`` keeps the true structure (a cell's ``row_span`` and
``col_span``). In ``rows`` and in the Markdown, which have no spans, a merged
cell's text stands in every slot it covers, so a column's header or a row's
label is found from any of its slots. Several header rows become one Markdown
header row, each column's header texts joined with " / " (a text repeated by
a span is written once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from docintel.geometry import BBox


@dataclass(frozen=True, slots=True)
class Cell:
    row: int
    col: int
    text: str
    row_span: int = 1
    col_span: int = 1
    bbox: BBox | None = None


@dataclass(frozen=True, slots=True)
class Table:
    cells: tuple[Cell, ...]
    header_rows: int = 0
    bbox: BBox | None = None
    shape: tuple[int, int] = field(default=(0, 0))  # (rows, columns); derived when (0, 0)

    def __post_init__(self) -> None:
        rows = max((c.row + c.row_span for c in self.cells), default=0)
        cols = max((c.col + c.col_span for c in self.cells), default=0)
        if self.shape == (0, 0):
            object.__setattr__(self, "shape", (rows, cols))
        elif rows > self.shape[0] or cols > self.shape[1]:
            raise ValueError(f"cells reach {rows}x{cols}, beyond the table's {self.shape}")
        for cell in self.cells:
            if cell.row < 0 or cell.col < 0 or cell.row_span < 1 or cell.col_span < 1:
                raise ValueError(f"invalid cell position or span: {cell}")
        if not 0 <= self.header_rows <= self.shape[0]:
            raise ValueError(f"header_rows {self.header_rows} outside 0..{self.shape[0]}")

    @property
    def rows(self) -> list[list[str]]:
        """The rectangular grid of strings; a merged cell's text fills every slot it covers.

        Where cells overlap (a model's output may), the later cell wins.
        """
        n_rows, n_cols = self.shape
        grid = [[""] * n_cols for _ in range(n_rows)]
        for cell in self.cells:
            for r in range(cell.row, cell.row + cell.row_span):
                for c in range(cell.col, cell.col + cell.col_span):
                    grid[r][c] = cell.text
        return grid

    @property
    def markdown(self) -> str:
        return to_markdown(self.rows, self.header_rows)

    @property
    def text(self) -> str:
        """Plain text: a row per line, cells separated by tabs (for search and ``text``)."""
        return "\n".join("\t".join(" ".join(t.split()) for t in row) for row in self.rows)

    def as_json(self) -> dict[str, object]:
        """The stored form: ``rows``, ``header_rows`` and ``cells`` with spans and boxes."""
        return {
            "rows": self.rows,
            "header_rows": self.header_rows,
            "cells": [
                {
                    "row": c.row,
                    "col": c.col,
                    "row_span": c.row_span,
                    "col_span": c.col_span,
                    "text": c.text,
                    "bbox": [round(v, 1) for v in c.bbox] if c.bbox else None,
                }
                for c in self.cells
            ],
        }


def to_markdown(rows: Sequence[Sequence[str]], header_rows: int = 0) -> str:
    """A GitHub pipe table. With no header row, the header line is left empty."""
    if not rows or not rows[0]:
        return ""
    n_cols = max(len(row) for row in rows)
    grid = [[_escape(text) for text in row] + [""] * (n_cols - len(row)) for row in rows]
    header = [_join_header(grid[r][c] for r in range(header_rows)) for c in range(n_cols)]
    lines = [_line(header), _line(["---"] * n_cols)]
    lines += [_line(row) for row in grid[header_rows:]]
    return "\n".join(lines)


def _join_header(texts: Iterable[str]) -> str:
    parts: list[str] = []
    for text in texts:
        if text and (not parts or parts[-1] != text):
            parts.append(text)
    return " / ".join(parts)


def _escape(text: str) -> str:
    # A pipe would end the cell and a newline the row.
    return " ".join(text.split()).replace("|", "\\|")


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
