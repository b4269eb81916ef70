"""Line confidences: the geometric mean probability of the line's text tokens."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from docintel.engines.base import EngineConfig
from docintel.engines.florence2.confidence import (
    TokenInfo,
    line_confidences,
    segment_confidences,
)
from docintel.engines.florence2.engine import Florence2Ocr
from docintel.engines.florence2.parsing import OCR_TASK, ParsedLine
from tests.fixtures.tiny_florence2 import build_tiny_florence2, loc

# A toy vocabulary: 100-107 are location tokens, 1 is </s>; others spell letters.
LOCS = list(range(100, 108))
INFO = TokenInfo(
    location_ids=frozenset(range(100, 1100)),
    sequence_ids=frozenset({0, 1, 2}),
    decode=lambda ids: "".join(chr(ord("a") + i - 10) for i in ids),
)
QUAD = (0.0,) * 8


def test_a_line_is_the_geometric_mean_of_its_text_tokens() -> None:
    tokens = [0, 10, 11, *LOCS, 12, *LOCS, 1]  # <s> "ab" box "c" box </s>
    logprobs = [0.0, math.log(0.5), math.log(0.8), *[math.log(0.1)] * 8, math.log(0.9)]
    logprobs += [0.0] * 8 + [0.0]
    segments = segment_confidences(tokens, logprobs, INFO)
    assert segments == [("ab", pytest.approx(math.sqrt(0.4))), ("c", pytest.approx(0.9))]


def test_text_before_an_incomplete_box_is_dropped() -> None:
    tokens = [10, 100, 101, 11, *LOCS]  # "a" with 2 locations, then "b" with a full box
    logprobs = [math.log(0.2), 0.0, 0.0, math.log(0.7), *[0.0] * 8]
    assert segment_confidences(tokens, logprobs, INFO) == [("b", pytest.approx(0.7))]


def test_lines_are_matched_in_order_and_unmatched_ones_get_the_overall_score() -> None:
    tokens = [10, *LOCS, 10, *LOCS, 11, *LOCS]  # "a", "a", "b"
    logprobs = [math.log(0.5), *[0.0] * 8, math.log(0.25), *[0.0] * 8, math.log(1.0), *[0.0] * 8]
    lines = [ParsedLine("a", QUAD), ParsedLine("a", QUAD), ParsedLine("zz", QUAD)]
    scores = line_confidences(lines, tokens, logprobs, INFO)
    overall = (0.5 * 0.25 * 1.0) ** (1 / 3)
    assert scores == pytest.approx([0.5, 0.25, overall])


def test_without_recorded_scores_every_line_is_certain() -> None:
    lines = [ParsedLine("a", QUAD)]
    assert line_confidences(lines, [10, *LOCS], [], INFO) == [1.0]


@pytest.fixture(scope="module")
def hesitant_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scripted checkpoint whose output layer is scaled down: the same answer, said
    with less certainty, so confidences are well below 1 and differ per token."""
    from transformers import Florence2ForConditionalGeneration

    directory = tmp_path_factory.mktemp("hesitant")
    answer = "hello" + loc(100, 100, 500, 100, 500, 200, 100, 200)
    answer += "Total" + loc(100, 300, 600, 300, 600, 400, 100, 400)
    build_tiny_florence2(directory, answer=answer)
    model = Florence2ForConditionalGeneration.from_pretrained(directory)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.2)
    model.save_pretrained(directory)
    return directory


def engine_for(directory: Path, **options: int) -> Florence2Ocr:
    settings = {"tile_size": 64, "min_tile_size": 64, "max_new_tokens": 64, **options}
    return Florence2Ocr(
        EngineConfig(
            name="florence2",
            model=str(directory),
            device="cpu",
            options=tuple(sorted(settings.items())),
        )
    )


def test_confidences_are_the_probabilities_generate_reports(hesitant_checkpoint: Path) -> None:
    image = Image.new("RGB", (64, 64), "white")
    engine = engine_for(hesitant_checkpoint)
    try:
        (lines,) = engine.recognize([image])
        # The reference: generate's own scores for the same greedy answer.
        loaded = engine.loaded
        inputs = loaded.processor(text=[OCR_TASK], images=[image], return_tensors="pt")
        with torch.inference_mode():
            out = loaded.model.generate(
                **inputs,
                max_new_tokens=64,
                num_beams=1,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        reference = loaded.model.compute_transition_scores(
            out.sequences, out.scores, normalize_logits=True
        )[0].tolist()
    finally:
        engine.close()
    tokens = out.sequences[0, 1:].tolist()
    info = TokenInfo.of(loaded.processor.tokenizer)
    expected = dict(segment_confidences(tokens, reference, info))

    assert [line.text for line in lines] == ["hello", "Total"]
    assert [line.confidence for line in lines] == pytest.approx(
        [expected["hello"], expected["Total"]], abs=1e-5
    )
    assert all(0.2 < line.confidence < 0.95 for line in lines), [ln.confidence for ln in lines]


def test_beam_search_leaves_confidences_at_one(hesitant_checkpoint: Path) -> None:
    engine = engine_for(hesitant_checkpoint, num_beams=3)
    try:
        (lines,) = engine.recognize([Image.new("RGB", (64, 64), "white")])
    finally:
        engine.close()
    assert [(line.text, line.confidence) for line in lines] == [("hello", 1.0), ("Total", 1.0)]
