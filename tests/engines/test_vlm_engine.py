"""The ``vlm`` engine: a transformers-native image-text-to-text model (a tiny LLaVA)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from docintel.engines import registry
from docintel.engines.base import EngineConfig, EngineError, RegionInput
from docintel.engines.hf_vlm import TransformersVlmEngine
from docintel.engines.region_prompts import PROMPT_VERSION
from docintel.engines.vlm_extraction import Turn
from tests.fixtures.tiny_llava import build_tiny_llava
from tests.fixtures.tiny_phi35v import scripted_decoder

TABLE = "| City | Pop |\n| --- | --- |\n| Oslo | 0.7 |"


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture
def engine(llava_dir: Path) -> Iterator[TransformersVlmEngine]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    config = EngineConfig(
        name="vlm", model=str(llava_dir), device="cpu", dtype="float32", batch_size=3
    )
    built = registry.get_extraction_engine(config)
    assert isinstance(built, TransformersVlmEngine)
    yield built
    registry.clear_engines()
    torch.set_num_threads(previous)


def _image(width: int, height: int, shade: int) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).rectangle((5, 5, width // 2, height // 2), fill=(shade, 40, 200))
    return image


def test_scripted_answer_becomes_a_table(engine: TransformersVlmEngine) -> None:
    engine.generate_overrides["prefix_allowed_tokens_fn"] = scripted_decoder(
        engine.processor.tokenizer, [[TABLE]]
    )
    (result,) = engine.extract([RegionInput("table", _image(300, 120, 10), ())])
    assert result.status == "done" and result.table is not None
    assert result.table.rows == [["City", "Pop"], ["Oslo", "0.7"]]
    assert result.model == engine.model_id and result.prompt_version == PROMPT_VERSION


def test_batched_answers_equal_one_by_one(engine: TransformersVlmEngine) -> None:
    engine.options.max_new_tokens["table"] = 5
    images = [_image(300, 120, 10), _image(90, 200, 200), _image(500, 500, 90)]
    # Different prompt lengths force left padding inside the batch.
    conversations = [
        (Turn("user", "Read the table."),),
        (Turn("user", "Convert this table to Markdown, please."),),
        (Turn("user", "Table?"),),
    ]
    batched = engine.generate("table", images, conversations)
    pairs = zip(images, conversations, strict=True)
    single = [engine.generate("table", [im], [c])[0] for im, c in pairs]
    assert [a.text for a in batched] == [a.text for a in single]
    assert len({a.text for a in batched}) > 1


def test_a_model_without_chat_template_is_refused(llava_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "no_template"
    shutil.copytree(llava_dir, copy)
    for name in ("chat_template.jinja", "chat_template.json"):
        (copy / name).unlink(missing_ok=True)
    processor_config = copy / "processor_config.json"
    if processor_config.exists():
        text = processor_config.read_text()
        import json

        data = json.loads(text)
        data.pop("chat_template", None)
        processor_config.write_text(json.dumps(data))
    with pytest.raises(EngineError, match="no chat template"):
        TransformersVlmEngine(EngineConfig(name="vlm", model=str(copy), device="cpu"))


def test_the_vlm_engine_needs_a_checkpoint() -> None:
    with pytest.raises(EngineError, match="DOCINTEL_EXTRACT_MODEL"):
        TransformersVlmEngine(EngineConfig(name="vlm"))
