"""The benchmark's stand-ins for the real checkpoints have the real models' size."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures.tiny_florence2 import florence2_config


@pytest.mark.parametrize(("arch", "published"), [("base", 0.23e9), ("large", 0.77e9)])
def test_published_shapes_have_the_published_parameter_counts(arch: str, published: float) -> None:
    from transformers import Florence2ForConditionalGeneration

    config = florence2_config(arch, vocab_size=51289, image_token_id=51289, decoder_positions=1024)
    with torch.device("meta"):  # shapes only: no memory, no time
        model = Florence2ForConditionalGeneration(config)
    count = sum(parameter.numel() for parameter in model.parameters())
    assert round(count / 1e7) == round(published / 1e7)
