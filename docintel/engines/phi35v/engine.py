"""The ``phi35v`` extraction engine: table and chart regions read by Phi-3.5-vision.

The model loads once per worker process (the registry keeps one engine per
config). Regions of one kind go through ``generate`` together: left-padded
prompts, a crop budget per region, a KV cache, greedy decoding. Options
(``DOCINTEL_EXTRACT_OPTIONS``): ``table_max_crops`` / ``chart_max_crops`` (the
most 336-px crops a region may use; each region uses the fewest that keep its
own resolution, see ``processor.crops_needed``), ``table_max_new_tokens`` /
``chart_max_new_tokens``, ``repair`` and ``attn_implementation``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PIL import Image

from docintel.engines.base import EngineConfig, EngineError
from docintel.engines.phi35v import loading
from docintel.engines.phi35v.processor import (
    Phi35VisionProcessor,
    crops_needed,
    image_token_count,
)
from docintel.engines.vlm_extraction import (
    Answer,
    Conversation,
    VisionLanguageExtractor,
    decode_answer,
)
from docintel.geometry import RegionKind

log = logging.getLogger(__name__)

NAME = "phi35v"

# The published model was tuned with num_crops 4 (multi-frame) to 16 (one
# image). A table region at 200 dpi is typically 1,000-1,700 px wide: 16 crops
# keep it at native resolution (5 x 336 = 1,680 px); charts need less, their
# labels are fewer and larger. See benchmarks/phi35v_crops.py for the counts.
DEFAULT_MAX_CROPS: dict[RegionKind, int] = {"table": 16, "chart": 9}


def chat_text(conversation: Conversation) -> str:
    """The model's chat format; the image goes first in the first user turn."""
    parts = []
    for i, turn in enumerate(conversation):
        image = "<|image_1|>\n" if i == 0 else ""
        parts.append(f"<|{turn.role}|>\n{image}{turn.text}<|end|>\n")
    return "".join(parts) + "<|assistant|>\n"


class Phi35VisionEngine(VisionLanguageExtractor):
    name = NAME

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.max_crops = {
            kind: config.int_option(f"{kind}_max_crops", default)
            for kind, default in DEFAULT_MAX_CROPS.items()
        }
        self.loaded = loading.load(
            config.model or loading.DEFAULT_MODEL,
            config.device,
            config.dtype,
            config.option("attn_implementation"),
        )
        self.model_id = self.loaded.source
        self.device = self.loaded.device
        self.processor = Phi35VisionProcessor(self.loaded.tokenizer)
        # Extra keyword arguments for generate (the tests script decoding here).
        self.generate_overrides: dict[str, Any] = {}

    def release(self) -> None:
        del self.loaded  # the last reference to the weights: the registry dropped the engine

    def crops_for(self, kind: RegionKind, image: Image.Image) -> int:
        return crops_needed(image.width, image.height, self.max_crops[kind])

    def batch_order(self, image: Image.Image) -> float:
        # Image tokens dominate the prompt: equal counts pad least.
        return float(image_token_count(image.width, image.height, self.max_crops["table"]))

    def generate(
        self, kind: RegionKind, images: Sequence[Image.Image], conversations: Sequence[Conversation]
    ) -> list[Answer]:
        import torch

        model = self.loaded.model
        budget = self.options.max_new_tokens[kind]
        batch = self.processor(
            [chat_text(c) for c in conversations],
            images,
            [self.crops_for(kind, image) for image in images],
        ).to(self.device, model.dtype)
        eos = list(self.loaded.eos_token_ids)
        kwargs: dict[str, Any] = {
            "attention_mask": batch.attention_mask,
            "max_new_tokens": budget,
            "do_sample": False,
            "eos_token_id": eos,
            "pad_token_id": self.processor.pad_token_id,
        }
        kwargs.update(self.generate_overrides)
        with torch.inference_mode():
            embeds = model.embed(batch.input_ids, batch.pixel_values, batch.image_sizes)
            # Given only embeddings, generate returns the new tokens alone.
            new = model.generate(inputs_embeds=embeds, **kwargs)
        return [decode_answer(row, eos, self.loaded.tokenizer) for row in new.tolist()]


def build(config: EngineConfig) -> Phi35VisionEngine:
    try:
        return Phi35VisionEngine(config)
    except EngineError:
        raise
    except (OSError, ValueError) as error:
        raise EngineError(f"cannot load the phi35v engine: {error}") from error
