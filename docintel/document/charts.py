"""Chart data: a versioned schema every chart engine's output is validated against.

Published as JSON Schema (``chart_json_schema``) so that users can validate
what they read from the API or the database. The ``table`` view must agree
with the ``series``: one row per x value, one column per series, in order.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION: Literal["1.0"] = "1.0"

ChartType = Literal["bar", "stacked_bar", "line", "area", "pie", "scatter", "other"]
Value = float | str | None


class Axis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = None
    unit: str | None = None


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: Value
    y: float | None
    raw: str | None = Field(default=None, description="The value as printed on the chart.")


class Series(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    points: list[Point]


class TableView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: list[str]
    rows: list[list[Value]]


class ChartData(BaseModel):
    """The data behind one chart."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    chart_type: ChartType
    title: str | None = None
    x_axis: Axis = Field(default_factory=Axis)
    y_axis: Axis = Field(default_factory=Axis)
    series: list[Series]
    table: TableView

    @model_validator(mode="after")
    def _table_agrees_with_series(self) -> ChartData:
        expected = table_view(self.series, self.x_axis.label)
        if self.table.columns != expected.columns or self.table.rows != expected.rows:
            raise ValueError(
                "the table view disagrees with the series; build it with table_view(series)"
            )
        return self

    @classmethod
    def from_series(
        cls,
        chart_type: ChartType,
        series: list[Series],
        *,
        title: str | None = None,
        x_axis: Axis | None = None,
        y_axis: Axis | None = None,
    ) -> ChartData:
        x_axis = x_axis or Axis()
        return cls(
            chart_type=chart_type,
            title=title,
            x_axis=x_axis,
            y_axis=y_axis or Axis(),
            series=series,
            table=table_view(series, x_axis.label),
        )


def table_view(series: list[Series], x_label: str | None = None) -> TableView:
    """One row per x value (in order of first appearance), one column per series."""
    xs: list[Value] = []
    for s in series:
        for point in s.points:
            if point.x not in xs:
                xs.append(point.x)
    rows: list[list[Value]] = []
    for x in xs:
        row: list[Value] = [x]
        for s in series:
            row.append(next((p.y for p in s.points if p.x == x), None))
        rows.append(row)
    return TableView(columns=[x_label or "x", *(s.name for s in series)], rows=rows)


def chart_json_schema() -> dict[str, Any]:
    return ChartData.model_json_schema()
