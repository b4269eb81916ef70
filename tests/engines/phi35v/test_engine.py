"""The phi35v extraction engine on a tiny checkpoint built here, through the production path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw

from docintel.engines import registry
from docintel.engines.base import RegionInput
from docintel.engines.phi35v.engine import Phi35VisionEngine, chat_text
from docintel.engines.phi35v.processor import crops_needed, hd_size
from docintel.engines.region_prompts import PROMPT_VERSION
from docintel.engines.vlm_extraction import REPAIR_MARKER, Turn
from tests.engines.phi35v.conftest import ConfigFactory
from tests.fixtures.tiny_phi35v import scripted_decoder

TABLE = "| Item | Qty |\n| --- | --- |\n| apple | 3 |\n| pear | 12 |"
CHART = (
    '{"chart_type": "bar", "title": "Sales", "x_axis": {"label": "Quarter", "unit": null}, '
    '"y_axis": {"label": "Revenue", "unit": "EUR"}, "series": [{"name": "2024", '
    '"points": [{"x": "Q1", "y": 4.5, "raw": "4.5"}, {"x": "Q2", "y": "7 EUR"}]}]}'
)


def _image(width: int, height: int, seed: int) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i in range(6):
        y = (seed * 17 + i * 23) % max(height - 10, 1)
        draw.rectangle((10 + i * 7, y, width - 20, y + 6), fill=(30 * i, 90, 200 - seed * 20))
    return image


def _regions(kinds: Sequence[str]) -> list[RegionInput]:
    sizes = [(420, 180), (200, 380), (900, 500), (300, 300)]
    return [
        RegionInput(kind, _image(*sizes[i % len(sizes)], seed=i), ())  # type: ignore[arg-type]
        for i, kind in enumerate(kinds)
    ]


@pytest.fixture
def engine(make_config: ConfigFactory) -> Phi35VisionEngine:
    built = registry.get_extraction_engine(make_config(batch_size=4, repair=False))
    assert isinstance(built, Phi35VisionEngine)
    return built


def test_chat_format_of_one_turn_and_a_repair_turn() -> None:
    assert chat_text((Turn("user", "Read it."),)) == (
        "<|user|>\n<|image_1|>\nRead it.<|end|>\n<|assistant|>\n"
    )
    repaired = chat_text((Turn("user", "A"), Turn("assistant", "B"), Turn("user", "C")))
    assert repaired == (
        "<|user|>\n<|image_1|>\nA<|end|>\n<|assistant|>\nB<|end|>\n<|user|>\nC<|end|>\n"
        "<|assistant|>\n"
    )


def test_crop_budget_keeps_a_region_at_its_own_resolution() -> None:
    assert crops_needed(300, 200, 16) == 1  # one crop already upscales it
    assert crops_needed(1600, 800, 16) == 15  # 5 x 3 crops: 1,680 px wide
    assert max(hd_size(1600, 800, 15)) >= 1600
    assert max(hd_size(1600, 800, 14)) < 1600
    assert crops_needed(1200, 3000, 16) == 16  # too large for the budget: the most allowed
    assert crops_needed(800, 10, 4) == 3  # a sliver still gets a grid


def test_batched_answers_equal_one_by_one(engine: Phi35VisionEngine) -> None:
    """Left padding and different crop counts per region must not change any answer."""
    engine.options.max_new_tokens["table"] = 6
    regions = _regions(["table"] * 4)
    images = [r.image for r in regions]
    conversation = ((Turn("user", "Convert this table to Markdown."),),)
    assert len({engine.crops_for("table", im) for im in images}) > 1
    batched = engine.generate("table", images, conversation * 4)
    single = [engine.generate("table", [im], conversation)[0] for im in images]
    assert [a.text for a in batched] == [a.text for a in single]
    assert all(a.truncated and a.new_tokens == 6 for a in batched)  # random weights never stop
    assert len({a.text for a in batched}) > 1  # the answers depend on the image


def test_scripted_answers_become_a_table_and_a_chart(engine: Phi35VisionEngine) -> None:
    tokenizer = engine.loaded.tokenizer
    regions = _regions(["chart", "table", "table"])
    # Tables go first (one call), charts second: each call spells its own answers.
    engine.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(
        tokenizer, [[TABLE, TABLE], [CHART]]
    )
    chart, table, table2 = engine.extract(regions)
    assert table.status == "done" and table2.status == "done"
    assert table.table is not None
    assert table.table.rows == [["Item", "Qty"], ["apple", "3"], ["pear", "12"]]
    assert table.table.header_rows == 1
    assert table.table.markdown == TABLE
    assert table.prompt_version == PROMPT_VERSION and table.model == engine.model_id
    assert chart.status == "done" and chart.chart is not None
    data = chart.chart
    assert data.chart_type == "bar" and data.title == "Sales" and data.y_axis.unit == "EUR"
    assert [(p.x, p.y, p.raw) for p in data.series[0].points] == [
        ("Q1", 4.5, "4.5"),
        ("Q2", 7.0, "7 EUR"),
    ]
    assert data.table.columns == ["Quarter", "2024"]
    assert engine.last_run.batches == 2


def test_invalid_answer_is_repaired_once(make_config: ConfigFactory) -> None:
    engine = registry.get_extraction_engine(make_config())
    assert isinstance(engine, Phi35VisionEngine)
    ragged = "| a | b |\n| --- | --- |\n| 1 | 2 | 3 |"
    engine.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(
        engine.loaded.tokenizer, [[ragged, TABLE], [TABLE]]
    )
    first, second = engine.extract(_regions(["table", "table"]))
    assert first.status == "done" and second.status == "done"
    assert first.table is not None and first.table.shape == (3, 2)
    assert engine.last_run.repairs == 1 and engine.last_run.batches == 2


def test_answer_still_invalid_after_repair_fails_with_both_raw_answers(
    make_config: ConfigFactory,
) -> None:
    engine = registry.get_extraction_engine(make_config())
    assert isinstance(engine, Phi35VisionEngine)
    engine.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(
        engine.loaded.tokenizer, [["no table here"], ['{"series": []}']]
    )
    (result,) = engine.extract(_regions(["chart"]))
    assert result.status == "failed"
    assert result.raw == "no table here" + REPAIR_MARKER + '{"series": []}'
    assert result.error is not None
    assert "no JSON" in result.error and "after one repair" in result.error
    assert result.prompt_version == PROMPT_VERSION


def test_answer_cut_by_the_token_limit_fails_without_repair(make_config: ConfigFactory) -> None:
    engine = registry.get_extraction_engine(make_config(table_max_new_tokens=5))
    assert isinstance(engine, Phi35VisionEngine)
    (result,) = engine.extract(_regions(["table"]))
    assert result.status == "failed"
    assert result.error == "the answer ran out of tokens (the limit is 5)"
    assert engine.last_run.repairs == 0


def test_out_of_memory_halves_the_batch_and_keeps_every_answer(
    engine: Phi35VisionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.options.max_new_tokens["table"] = 4
    regions = _regions(["table"] * 4)
    expected = [r.raw for r in engine.extract(regions)]
    real = engine.generate
    sizes: list[int] = []

    def small_gpu(kind: Any, images: Sequence[Image.Image], conversations: Any) -> Any:
        sizes.append(len(images))
        if len(images) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(kind, images, conversations)

    monkeypatch.setattr(engine, "generate", small_gpu)
    results = engine.extract(regions)
    assert [r.raw for r in results] == expected
    assert sizes == [4, 2, 1, 1, 1, 1]
    assert engine.max_batch == 1 and engine.last_run.oom_retries == 2


def test_a_non_memory_error_is_not_swallowed(
    engine: Phi35VisionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("device-side assert triggered")

    monkeypatch.setattr(engine, "generate", broken)
    with pytest.raises(RuntimeError, match="device-side assert"):
        engine.extract(_regions(["table", "table"]))


def test_registry_keeps_the_model_beside_the_cpu_table_reader(make_config: ConfigFactory) -> None:
    from docintel.engines.base import EngineConfig

    model = registry.get_extraction_engine(make_config())
    cpu = registry.get_extraction_engine(EngineConfig(name="cpu-tables"))
    assert registry.get_extraction_engine(make_config()) is model
    assert registry.get_extraction_engine(EngineConfig(name="cpu-tables")) is cpu


def test_another_config_of_the_engine_replaces_it_and_frees_its_weights(
    make_config: ConfigFactory,
) -> None:
    first = registry.get_extraction_engine(make_config())
    assert isinstance(first, Phi35VisionEngine)
    second = registry.get_extraction_engine(make_config(table_max_crops=4))
    assert second is not first and not hasattr(first, "loaded")
    assert isinstance(second, Phi35VisionEngine) and second.max_crops["table"] == 4
