"""Table/chart region detection on the tiny checkpoint, with scripted answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from docintel.engines.base import EngineError, RegionDetector
from docintel.engines.florence2.engine import (
    Florence2RegionDetector,
    Generation,
    detection_prompts,
    region_kind,
)
from docintel.engines.florence2.parsing import OD_TASK, OVD_TASK
from docintel.geometry import Region
from tests.engines.florence2.conftest import ConfigFactory
from tests.fixtures.tiny_florence2 import loc, scripted_decoder


@pytest.fixture
def build(make_config: ConfigFactory) -> Iterator[Callable[..., Florence2RegionDetector]]:
    built: list[Florence2RegionDetector] = []

    def make(**kwargs: Any) -> Florence2RegionDetector:
        detector = Florence2RegionDetector(make_config(**kwargs))
        built.append(detector)
        return detector

    yield make
    for detector in built:
        detector.close()


def page(width: int = 1000, height: int = 800) -> Image.Image:
    return Image.new("RGB", (width, height), "white")


def test_open_vocabulary_prompts_per_page(
    build: Callable[..., Florence2RegionDetector], tokenizer: Any
) -> None:
    detector = build(max_new_tokens=32)
    assert isinstance(detector, RegionDetector)
    assert detector.prompts == [f"{OVD_TASK}table", f"{OVD_TASK}chart"]
    # rows: page0/table, page0/chart, page1/table, page1/chart
    answers = [
        "table" + loc(100, 100, 500, 300),
        "chart" + loc(600, 500, 900, 900),
        "table" + loc(0, 0, 999, 999) + "table" + loc(10, 10, 990, 990),  # one table, twice
        "",  # nothing found
    ]
    detector.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(tokenizer, answers)

    first, second = detector.detect([page(), page(500, 400)])

    assert first == [
        Region("table", (100, 80, 500, 240), 1.0, "table"),
        Region("chart", (600, 400, 900, 720), 1.0, "chart"),
    ]
    assert [(r.kind, r.bbox) for r in second] == [("table", (0, 0, 499, 399))]
    assert detector.last_run.tiles == 4 and detector.last_run.batches == 1


def test_od_labels_are_mapped_and_others_dropped(
    build: Callable[..., Florence2RegionDetector], tokenizer: Any
) -> None:
    detector = build(detect_task="<OD>", max_new_tokens=64)
    assert detector.prompts == [OD_TASK]
    answer = (
        "person"
        + loc(0, 0, 100, 100)
        + "bar chart"
        + loc(500, 0, 900, 400)
        + "Table"
        + loc(0, 500, 400, 900)
        + "diagram"
        + loc(600, 600, 601, 601)  # one pixel: an artefact
    )
    detector.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(tokenizer, answer)
    (regions,) = detector.detect([page()])
    assert [(r.kind, r.label) for r in regions] == [("chart", "bar chart"), ("table", "Table")]


def test_random_weights_do_not_break_detection(
    build: Callable[..., Florence2RegionDetector],
) -> None:
    detector = build(detect_task="both", max_new_tokens=24)
    result = detector.detect([page(300, 200), page(64, 64).convert("L")])
    assert len(result) == 2 and detector.last_run.tiles == 6
    for regions in result:
        assert all(r.kind in ("table", "chart") for r in regions)


def _recording(real: Callable[..., list[Generation]], seen: list[str], *args: Any) -> Any:
    generations = real(*args)
    seen.extend(g.text for g in generations)
    return generations


def test_prompts_of_different_lengths_batch_like_one_by_one(
    make_config: ConfigFactory, lively_florence2_dir: Path
) -> None:
    """Rows are padded to the longest prompt: on the right, whatever the checkpoint's
    tokenizer says (BART's learned positions shift under left padding)."""
    options = {"detect_task": "both", "max_new_tokens": 16}
    lively = str(lively_florence2_dir)
    batched = Florence2RegionDetector(replace(make_config(batch_size=8, **options), model=lively))
    single = Florence2RegionDetector(replace(make_config(batch_size=1, **options), model=lively))
    try:
        assert batched.loaded.processor.tokenizer.padding_side == "left"
        texts: list[list[str]] = []
        for detector in (batched, single):
            seen: list[str] = []
            texts.append(seen)
            detector._generate = partial(_recording, detector._generate, seen)  # type: ignore[method-assign]
            detector.detect([page(300, 200), page(64, 64)])
        assert batched.last_run.batches == 1 and single.last_run.batches == 6
        assert texts[0] == texts[1]
        assert len(set(texts[1][:3])) == 3  # three prompts, three different answers
    finally:
        batched.close()
        single.close()


@pytest.mark.parametrize(
    ("options", "prompts"),
    [
        ({}, [f"{OVD_TASK}table", f"{OVD_TASK}chart"]),
        ({"detect_task": "od"}, [OD_TASK]),
        (
            {"detect_task": "<OPEN_VOCABULARY_DETECTION>", "detect_prompts": "table, figure"},
            [f"{OVD_TASK}table", f"{OVD_TASK}figure"],
        ),
        ({"detect_task": "both", "detect_prompts": ("graph",)}, [OD_TASK, f"{OVD_TASK}graph"]),
    ],
)
def test_detection_prompts(
    make_config: ConfigFactory, options: dict[str, Any], prompts: list[str]
) -> None:
    assert detection_prompts(make_config(**options)) == prompts


def test_bad_detect_task_fails_before_loading(make_config: ConfigFactory) -> None:
    with pytest.raises(EngineError, match="detect_task"):
        Florence2RegionDetector(make_config(detect_task="<CAPTION>"))


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("table", "table"),
        ("dining table", "table"),
        ("Bar Chart", "chart"),
        ("line graph", "chart"),
        ("scatter plot", "chart"),
        ("diagram", "chart"),
        ("person", None),
        ("", None),
    ],
)
def test_region_kind(label: str, kind: str | None) -> None:
    assert region_kind(label) == kind
