"""Our Phi-3.5-vision against values produced by the published reference code.

``golden/`` was written by ``reference/make_golden.py`` running Microsoft's own
``modeling_phi3_v.py`` / ``processing_phi3_v.py`` on transformers 4.44 with a
tiny random checkpoint (``golden/tiny-phi35v``). Here the same checkpoint goes
through our production loading path, processor and model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from docintel.engines.phi35v import loading
from docintel.engines.phi35v.processor import Phi35VisionProcessor, grid_token_count

CASES = ("landscape", "portrait")


@pytest.fixture(scope="module")
def loaded(golden_dir: Path) -> Any:
    return loading.load(str(golden_dir), device="cpu", dtype="float32", attn="eager")


@pytest.fixture(scope="module")
def inputs(loaded: Any, golden: dict[str, Any], golden_dir: Path) -> dict[str, Any]:
    processor = Phi35VisionProcessor(loaded.tokenizer, num_crops=golden["num_crops"])
    out = {}
    for name in CASES:
        case = golden["cases"][name]
        image = Image.open(golden_dir.parent / f"{name}.png")
        out[name] = processor([case["prompt"]], [image])
    return out


@pytest.mark.parametrize("name", CASES)
def test_input_ids_and_pixels_are_the_reference_processors(
    name: str, inputs: dict[str, Any], golden: dict[str, Any]
) -> None:
    case, batch = golden["cases"][name], inputs[name]
    assert batch.input_ids[0].tolist() == case["input_ids"]
    assert int(batch.attention_mask.sum()) == case["attention_mask_sum"]
    assert batch.image_sizes.tolist() == case["image_sizes"]
    pixels = batch.pixel_values
    assert list(pixels.shape) == case["pixel_values_shape"]
    assert pixels.dtype == torch.float32
    assert hashlib.sha256(pixels.numpy().tobytes()).hexdigest() == case["pixel_values_sha256"]
    rows, cols = (s // 336 for s in case["image_sizes"][0])
    assert case["num_image_ids_in_input"] == grid_token_count(rows, cols)


@pytest.mark.parametrize("name", CASES)
def test_image_embeddings_and_logits_match_within_1e4(
    name: str, loaded: Any, inputs: dict[str, Any], golden: dict[str, Any]
) -> None:
    case, batch = golden["cases"][name], inputs[name]
    model = loaded.model
    with torch.no_grad():
        features = model.image_embedding(batch.pixel_values, batch.image_sizes)[0]
        embeds = model.embed(batch.input_ids, batch.pixel_values, batch.image_sizes)
        logits = model(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    assert list(features.shape) == case["image_embeds_shape"]
    row_sums = features.double().sum(-1).numpy()
    np.testing.assert_allclose(row_sums, case["image_embeds_row_sums"], atol=1e-3)
    last8 = logits[0, -8:].numpy()
    assert np.abs(last8 - np.array(case["prompt_logits_last8"])).max() <= 1e-4
    assert last8.argmax(-1).tolist() == case["prompt_argmax_last8"]


@pytest.mark.parametrize("name", CASES)
def test_greedy_generation_with_kv_cache_gives_the_reference_tokens(
    name: str, loaded: Any, inputs: dict[str, Any], golden: dict[str, Any]
) -> None:
    case, batch = golden["cases"][name], inputs[name]
    model = loaded.model
    with torch.no_grad():
        embeds = model.embed(batch.input_ids, batch.pixel_values, batch.image_sizes)
        out = model.generate(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask,
            max_new_tokens=golden["max_new_tokens"],
            do_sample=False,
            eos_token_id=None,
            pad_token_id=loaded.tokenizer.pad_token_id,
            output_scores=True,
            return_dict_in_generate=True,
        )
    assert out.sequences[0].tolist() == case["generated_ids"]
    steps = torch.stack(out.scores)[:, 0].numpy()
    assert np.abs(steps - np.array(case["step_logits"])).max() <= 1e-4


def test_input_ids_are_never_mutated(loaded: Any, inputs: dict[str, Any]) -> None:
    batch = inputs["landscape"]
    before = batch.input_ids.clone()
    with torch.no_grad():
        loaded.model.embed(batch.input_ids, batch.pixel_values, batch.image_sizes)
    assert torch.equal(batch.input_ids, before)
    assert int((batch.input_ids < 0).sum()) > 0  # the image positions are still marked
