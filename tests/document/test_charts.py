"""The chart schema: versioned, strict, published as JSON Schema, its table view in
agreement with its series."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from docintel.document.charts import (
    Axis,
    ChartData,
    Point,
    Series,
    TableView,
    chart_json_schema,
)


def _sales() -> ChartData:
    return ChartData.from_series(
        "bar",
        [
            Series(name="2023", points=[Point(x="Q1", y=1.5, raw="1.5"), Point(x="Q2", y=2.0)]),
            Series(name="2024", points=[Point(x="Q2", y=2.5), Point(x="Q3", y=3.0)]),
        ],
        title="Sales",
        x_axis=Axis(label="Quarter"),
        y_axis=Axis(label="Sales", unit="EUR m"),
    )


def test_the_table_view_has_a_row_per_x_and_a_column_per_series() -> None:
    chart = _sales()
    assert chart.schema_version == "1.0"
    assert chart.table.columns == ["Quarter", "2023", "2024"]
    assert chart.table.rows == [["Q1", 1.5, None], ["Q2", 2.0, 2.5], ["Q3", None, 3.0]]


def test_a_table_that_disagrees_with_the_series_is_refused() -> None:
    data = _sales().model_dump()
    data["table"]["rows"][0][1] = 9.9
    with pytest.raises(ValidationError, match="disagrees"):
        ChartData.model_validate(data)


@pytest.mark.parametrize(
    "change",
    [
        {"chart_type": "donut"},
        {"schema_version": "2.0"},
        {"colour": "red"},  # no silent extras
    ],
)
def test_output_outside_the_schema_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChartData.model_validate({**_sales().model_dump(), **change})


def test_garbage_from_an_engine_is_a_validation_error_not_a_crash() -> None:
    with pytest.raises(ValidationError):
        ChartData.model_validate_json('{"chart_type": "bar", "series": "lots"}')
    with pytest.raises(ValidationError):
        ChartData.model_validate_json("not json at all")


def test_the_json_schema_is_published_and_round_trips() -> None:
    schema = chart_json_schema()
    assert set(schema["properties"]) >= {"schema_version", "chart_type", "series", "table"}
    assert schema["properties"]["chart_type"]["enum"] == [
        "bar",
        "stacked_bar",
        "line",
        "area",
        "pie",
        "scatter",
        "other",
    ]
    chart = _sales()
    assert ChartData.model_validate_json(chart.model_dump_json()) == chart
    json.dumps(schema)  # serialisable as published
    assert TableView(columns=["x"], rows=[]).rows == []
