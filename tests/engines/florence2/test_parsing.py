"""Parsing Florence-2 answers: realistic strings, broken strings, never an exception."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docintel.engines.florence2.parsing import (
    OD_TASK,
    OVD_TASK,
    clean_generation,
    clean_label,
    fallback_parse_boxes,
    fallback_parse_ocr,
    parse_boxes,
    parse_ocr,
)
from tests.fixtures.tiny_florence2 import loc

SIZE = (1000, 500)
HELLO = "Hello" + loc(100, 100, 200, 100, 200, 120, 100, 120)
WORLD = "World wide" + loc(300, 300, 450, 300, 450, 330, 300, 330)


def texts(lines: list[Any]) -> list[str]:
    return [line.text for line in lines]


def test_realistic_answer(processor: Any) -> None:
    raw = f"</s><s>{HELLO}{WORLD}</s><pad><pad>"
    lines = parse_ocr(processor, raw, SIZE)
    assert texts(lines) == ["Hello", "World wide"]
    # bin centers: (100 + 0.5) / 1000 * 1000 px wide, * 500 px high
    assert lines[0].quad == (100, 50, 200, 50, 200, 60, 100, 60)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", []),
        ("</s><s></s>", []),
        ("<pad><pad><pad>", []),
        ("\x00\x01garbage \ufffd\ufffd without any boxes", []),
        # missing location tokens: the incomplete line is lost, the rest survives
        ("Lost" + loc(1, 2, 3, 4, 5, 6) + HELLO, ["Hello"]),
        # odd count: a ninth location token must not leak into the next label
        ("Nine" + loc(1, 2, 3, 4, 5, 6, 7, 8, 9) + "Next" + loc(*range(8)), ["Nine", "Next"]),
        # truncated mid-line and mid-token (a cut string, not token ids)
        (HELLO + "Unfinished line" + loc(1, 2, 3), ["Hello"]),
        (HELLO + "Cut<loc_1><lo", ["Hello"]),
        (HELLO + "<loc_4", ["Hello"]),
        # boxes with no text, then task markup inside labels
        (loc(*range(8)) + "<ocr>Tagged</ocr>" + loc(*range(8)), ["Tagged"]),
        # out-of-range bins are clamped into the image
        ("Far" + loc(999, 999, 1500, 999, 1500, 1500, 999, 1500), ["Far"]),
    ],
)
def test_broken_answers_never_raise(processor: Any, raw: str, expected: list[str]) -> None:
    lines = parse_ocr(processor, raw, SIZE)
    assert texts(lines) == expected
    for line in lines:
        assert "<" not in line.text
        assert all(0 <= v <= SIZE[i % 2] for i, v in enumerate(line.quad))


class _Broken:
    """A processor whose reference parser fails or returns nonsense."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def post_process_generation(self, text: str, task: str, image_size: Any) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return {task: self.answer}


def test_processor_failure_falls_back_to_own_parser() -> None:
    lines = parse_ocr(_Broken(ValueError("Unsupported parse task: ocr")), HELLO + WORLD, SIZE)
    assert texts(lines) == ["Hello", "World wide"]
    assert lines[0].quad == (100.5, 50.25, 200.5, 50.25, 200.5, 60.25, 100.5, 60.25)


def test_nonsense_from_processor_is_filtered() -> None:
    answer = {
        "labels": ["ok", "nan box", "short box", ""],
        "quad_boxes": [
            [1, 2, 3, 4, 5, 6, 7, 8],
            [float("nan")] * 8,
            [1, 2, 3],
            [1, 2, 3, 4, 5, 6, 7, 8],
        ],
    }
    assert texts(parse_ocr(_Broken(answer), "x", SIZE)) == ["ok"]
    # mismatched lengths: the processor's answer is unusable, the fallback reads the text
    bad = {"labels": ["a"], "quad_boxes": []}
    assert texts(parse_ocr(_Broken(bad), HELLO, SIZE)) == ["Hello"]


def test_fallback_parser_alone() -> None:
    raw = "</s><s>" + "Lost" + loc(1, 2, 3) + "text" + HELLO + "tail" + loc(1)
    assert texts(fallback_parse_ocr(raw, SIZE)) == ["textHello"]
    assert fallback_parse_ocr("", SIZE) == []


def test_clean_helpers() -> None:
    assert clean_generation("</s><s>abc<pad></s><lo") == "abc"
    assert clean_generation("a < b and c<loc_12") == "a < b and c"
    assert clean_label("  <ocr>Net   total<loc_3> </ocr>") == "Net total"
    assert clean_label("a < b") == "a < b"  # a real '<' in text stays


def test_detection_answers(processor: Any) -> None:
    od = "</s><s>table" + loc(100, 100, 500, 300) + "dining table" + loc(0, 0, 10, 10) + "</s>"
    boxes = parse_boxes(processor, od, OD_TASK, SIZE)
    assert [(b.label, b.bbox) for b in boxes] == [
        ("table", (100, 50, 500, 150)),
        ("dining table", (0, 0, 10, 5)),
    ]
    ovd = "</s><s>chart" + loc(600, 200, 900, 400) + "</s>"
    assert [b.label for b in parse_boxes(processor, ovd, OVD_TASK, SIZE)] == ["chart"]
    poly = "chart<poly>" + loc(100, 100, 300, 100, 300, 300, 100, 300) + "</poly>"
    (box,) = parse_boxes(processor, poly, OVD_TASK, SIZE)
    assert box.label == "chart" and box.bbox == (100, 50, 300, 150)


@pytest.mark.parametrize("raw", ["", "table", "table<loc_1><loc_2>", "<loc_1>" * 7, "<<<>>>"])
def test_broken_detection_answers(processor: Any, raw: str) -> None:
    for task in (OD_TASK, OVD_TASK):
        for box in parse_boxes(processor, raw, task, SIZE):
            assert 0 <= box.bbox[0] <= box.bbox[2] <= SIZE[0]


def test_detection_fallback() -> None:
    boxes = parse_boxes(
        _Broken(RuntimeError("boom")), "table" + loc(1, 2, 3, 4, 5, 6, 7, 8), OD_TASK, SIZE
    )
    assert [b.label for b in boxes] == ["table", "table"]
    assert fallback_parse_boxes("", SIZE) == []


pieces = st.one_of(
    st.sampled_from(["<s>", "</s>", "<pad>", "<ocr>", "</od>", "<poly>", "<sep>", "<lo", "<"]),
    st.integers(0, 1200).map(lambda b: f"<loc_{b}>"),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(pieces, max_size=40), w=st.integers(1, 4000), h=st.integers(1, 4000))
def test_arbitrary_output_never_raises(processor: Any, parts: list[str], w: int, h: int) -> None:
    raw = "".join(parts)
    for line in parse_ocr(processor, raw, (w, h)):
        assert line.text and line.text == line.text.strip()
        assert all(0 <= v <= (w, h)[i % 2] for i, v in enumerate(line.quad))
    for task in (OD_TASK, OVD_TASK):
        parse_boxes(processor, raw, task, (w, h))
