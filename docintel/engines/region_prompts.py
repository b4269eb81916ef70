"""What vision-language engines are asked about a region, and how their answers are read.

Tables are asked for as a GitHub Markdown table: it is the format these models
write best, and it costs far fewer tokens than JSON (no quotes, no brackets per
cell); decoding is the slow part. The stored JSON rows and cells are derived
from it, so the two never disagree. A JSON answer (``{"header_rows", "rows"}``)
is read too. Charts are asked for as JSON in the chart schema's shape; the
schema's table view is computed from the series, not trusted from the model.

Every answer is validated: a table must be rectangular (a ragged row is an
error, not silently padded: the model lost a cell and the columns would shift),
a chart must pass the chart schema. The error text goes back to the model in
one repair turn.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from pydantic import ValidationError

from docintel.document.charts import Axis, ChartData, ChartType, Point, Series
from docintel.document.tables import Cell, Table
from docintel.geometry import RegionKind

# Stored with every result: change it whenever a prompt or the reading of answers changes.
PROMPT_VERSION = "regions-v1"

TABLE_PROMPT = (
    "Convert the table in this image to a GitHub Markdown table. "
    "Copy every cell's text exactly as printed. Keep every row and column; "
    "an empty cell stays empty. A merged cell's text is repeated in every row "
    "and column it spans, so that every row has the same number of cells. "
    "If the table has several header rows, join each column's headers with ' / '. "
    "Answer with the Markdown table only."
)

CHART_PROMPT = (
    "Extract the data of this chart. Answer with JSON only, in this form:\n"
    '{"chart_type": "bar" | "stacked_bar" | "line" | "area" | "pie" | "scatter" | "other", '
    '"title": string or null, '
    '"x_axis": {"label": string or null, "unit": string or null}, '
    '"y_axis": {"label": string or null, "unit": string or null}, '
    '"series": [{"name": string, "points": [{"x": category or number, '
    '"y": number or null, "raw": the value as printed or null}]}]}\n'
    "One series per legend entry (one series named after the chart when there is "
    "no legend). Read values from the labels when printed, else estimate them from the axes."
)

PROMPTS: dict[RegionKind, str] = {"table": TABLE_PROMPT, "chart": CHART_PROMPT}


def repair_prompt(kind: RegionKind, error: str) -> str:
    """The follow-up turn after an invalid answer: what was wrong, and the format again."""
    form = "the Markdown table only" if kind == "table" else "the JSON only, in the form asked"
    return f"That answer cannot be used: {error}. Answer again with {form}."


class InvalidAnswer(ValueError):
    """The model's answer is not a usable table or chart; the message says why."""


def parse_answer(kind: RegionKind, text: str) -> Table | ChartData:
    return parse_table(text) if kind == "table" else parse_chart(text)


# ---- tables ------------------------------------------------------------------

_SEPARATOR_CELL = re.compile(r"^:?-{1,}:?$")
_FENCE = re.compile(r"```(?:[a-zA-Z]+)?\s*\n?(.*?)```", re.DOTALL)


def parse_table(text: str) -> Table:
    """A table from a Markdown pipe table, or from JSON ``{"header_rows", "rows"}``."""
    body = _unfenced(text)
    if body.lstrip().startswith(("{", "[")):
        return _table_from_json(body)
    lines = [line.strip() for line in body.splitlines()]
    lines = [line for line in lines if line.startswith("|") or line.count("|") >= 2]
    if not lines:
        raise InvalidAnswer("no Markdown table (no lines with | between cells)")
    rows = [_split_row(line) for line in lines]
    header_rows = 0
    if len(rows) > 1 and all(_SEPARATOR_CELL.match(c.replace(" ", "")) for c in rows[1]):
        header_rows = 1
        del rows[1]
    # A stray separator line further down (some models repeat it) is not a row.
    rows = [row for row in rows if not (any(row) and all(_SEPARATOR_CELL.match(c) for c in row))]
    return _table(rows, header_rows)


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = re.split(r"(?<!\\)\|", line)
    return [" ".join(c.replace("\\|", "|").split()) for c in cells]


def _table_from_json(body: str) -> Table:
    data = _json(body)
    if isinstance(data, list):
        data = {"rows": data, "header_rows": 0}
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise InvalidAnswer('the JSON has no "rows" list')
    rows = data["rows"]
    if not all(isinstance(row, list) for row in rows):
        raise InvalidAnswer('"rows" must be a list of lists of cell texts')
    header_rows = data.get("header_rows", 0)
    if not isinstance(header_rows, int) or isinstance(header_rows, bool):
        raise InvalidAnswer('"header_rows" must be a whole number')
    texts = [["" if c is None else " ".join(str(c).split()) for c in row] for row in rows]
    return _table(texts, header_rows)


def _table(rows: list[list[str]], header_rows: int) -> Table:
    if not rows or not any(any(cell for cell in row) for row in rows):
        raise InvalidAnswer("the table is empty")
    widths = sorted({len(row) for row in rows})
    if len(widths) > 1:
        counts = ", ".join(
            f"row {i + 1} has {len(row)}" for i, row in enumerate(rows) if len(row) != len(rows[0])
        )
        raise InvalidAnswer(
            f"rows differ in length (row 1 has {len(rows[0])} cells; {counts[:200]})"
        )
    if not 0 <= header_rows <= len(rows):
        raise InvalidAnswer(f"header_rows {header_rows} outside 0..{len(rows)}")
    cells = tuple(Cell(r, c, text) for r, row in enumerate(rows) for c, text in enumerate(row))
    return Table(cells=cells, header_rows=header_rows, shape=(len(rows), widths[0]))


# ---- charts ------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_CHART_TYPES = ("bar", "stacked_bar", "line", "area", "pie", "scatter", "other")


def parse_chart(text: str) -> ChartData:
    """Chart data from a JSON answer in the schema's shape, its table view recomputed."""
    data = _json(_unfenced(text))
    if not isinstance(data, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    chart_type = str(data.get("chart_type") or "other").strip().lower().replace(" ", "_")
    if chart_type not in _CHART_TYPES:
        chart_type = "other"
    raw_series = data.get("series")
    if not isinstance(raw_series, list) or not raw_series:
        raise InvalidAnswer('"series" must be a non-empty list')
    try:
        series = [_series(item, i) for i, item in enumerate(raw_series)]
        return ChartData.from_series(
            cast(ChartType, chart_type),  # one of _CHART_TYPES, checked above
            series,
            title=_text_or_none(data.get("title")),
            x_axis=Axis.model_validate(_axis(data.get("x_axis"))),
            y_axis=Axis.model_validate(_axis(data.get("y_axis"))),
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidAnswer(f"not in the chart schema: {where}: {first['msg']}") from None


def _series(item: Any, index: int) -> Series:
    if not isinstance(item, dict):
        raise InvalidAnswer(f"series {index + 1} is not an object")
    points = item.get("points")
    if not isinstance(points, list) or not points:
        raise InvalidAnswer(f"series {index + 1} has no points")
    name = _text_or_none(item.get("name")) or f"series {index + 1}"
    return Series(name=name, points=[_point(p, index) for p in points])


def _point(item: Any, index: int) -> Point:
    if not isinstance(item, dict) or "x" not in item or "y" not in item:
        raise InvalidAnswer(f'a point of series {index + 1} lacks "x" or "y"')
    x = item["x"]
    if not isinstance(x, int | float | str) and x is not None:
        x = str(x)
    y = item["y"]
    raw = _text_or_none(item.get("raw"))
    if isinstance(y, str):
        raw = raw or y
        y = _number(y)
    elif isinstance(y, bool) or not isinstance(y, int | float | None):
        raise InvalidAnswer(f"a y value of series {index + 1} is not a number: {y!r}")
    return Point(x=x, y=None if y is None else float(y), raw=raw)


def _number(text: str) -> float | None:
    """The number in a printed value ("12.5%", "$1,200", "-3"); None when there is none."""
    match = next((m for m in _NUMBER.finditer(text) if m.group(0) not in ("", "+", "-")), None)
    if match is None:
        return None
    try:
        return float(match.group(0).replace(",", ""))
    except ValueError:
        return None


def _axis(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {key: _text_or_none(value.get(key)) for key in ("label", "unit")}


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


# ---- shared ------------------------------------------------------------------


def _unfenced(text: str) -> str:
    """The inside of a ```code fence``` when the answer has one."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def _json(body: str) -> Any:
    start = min((i for i in (body.find("{"), body.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise InvalidAnswer("no JSON in the answer")
    try:
        value, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as error:
        raise InvalidAnswer(f"invalid JSON: {error.msg} at character {error.pos}") from None
    return value
