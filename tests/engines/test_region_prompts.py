"""Reading model answers: Markdown or JSON tables, chart JSON, and clear reasons to refuse."""

from __future__ import annotations

import pytest

from docintel.engines.region_prompts import InvalidAnswer, parse_chart, parse_table


def test_markdown_table_with_header_fence_and_escaped_pipe() -> None:
    answer = (
        "Here is the table:\n```markdown\n"
        "| Name | Note |\n|:---|---:|\n| a | x \\| y |\n|  | empty first |\n```\nDone."
    )
    table = parse_table(answer)
    assert table.rows == [["Name", "Note"], ["a", "x | y"], ["", "empty first"]]
    assert table.header_rows == 1
    assert table.markdown.splitlines()[2] == "| a | x \\| y |"


def test_markdown_without_separator_has_no_header_and_blank_rows_stay() -> None:
    table = parse_table("| 1 | 2 |\n|  |  |\n| 3 | 4 |")
    assert table.header_rows == 0
    assert table.rows == [["1", "2"], ["", ""], ["3", "4"]]


def test_json_rows_with_header_rows_and_nulls() -> None:
    table = parse_table('{"header_rows": 2, "rows": [["A", "A"], ["x", "y"], [1, null]]}')
    assert table.rows == [["A", "A"], ["x", "y"], ["1", ""]]
    assert table.header_rows == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("| a | b |\n| --- | --- |\n| 1 |", "rows differ in length"),
        ("There is no table in this image.", "no Markdown table"),
        ("|  |  |\n| --- | --- |", "the table is empty"),
        ('{"rows": "a,b"}', '"rows" list'),
        ('{"rows": [["a"]], "header_rows": 3}', "header_rows 3 outside"),
        ('{"rows": [["a"', "invalid JSON"),
    ],
)
def test_unusable_tables_are_refused_with_a_reason(answer: str, reason: str) -> None:
    with pytest.raises(InvalidAnswer, match=reason):
        parse_table(answer)


def test_chart_json_with_printed_values_and_recomputed_table() -> None:
    chart = parse_chart(
        '```json\n{"chart_type": "Stacked Bar", "title": " Share ", '
        '"x_axis": {"label": "Year"}, "y_axis": {"label": "Share", "unit": "%"}, '
        '"series": [{"name": "A", "points": [{"x": 2020, "y": "12.5%"}, {"x": 2021, "y": 3}]}, '
        '{"name": "B", "points": [{"x": 2021, "y": "$1,200"}]}], '
        '"table": {"columns": ["wrong"], "rows": []}}\n```'
    )
    assert chart.chart_type == "stacked_bar" and chart.title == "Share"
    a, b = chart.series
    assert [(p.x, p.y, p.raw) for p in a.points] == [(2020, 12.5, "12.5%"), (2021, 3.0, None)]
    assert b.points[0].y == 1200.0
    assert chart.table.columns == ["Year", "A", "B"]
    assert chart.table.rows == [[2020, 12.5, None], [2021, 3.0, 1200.0]]


def test_unknown_chart_type_is_other_and_unnamed_series_get_names() -> None:
    chart = parse_chart('{"chart_type": "radar", "series": [{"points": [{"x": "a", "y": 1}]}]}')
    assert chart.chart_type == "other" and chart.series[0].name == "series 1"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("no json", "no JSON"),
        ('{"series": []}', "non-empty list"),
        ('{"series": [{"name": "a", "points": [{"x": 1}]}]}', 'lacks "x" or "y"'),
        ('{"series": [{"name": "a", "points": [{"x": 1, "y": [2]}]}]}', "not a number"),
        ('["a"]', "not a JSON object"),
    ],
)
def test_unusable_charts_are_refused_with_a_reason(answer: str, reason: str) -> None:
    with pytest.raises(InvalidAnswer, match=reason):
        parse_chart(answer)
