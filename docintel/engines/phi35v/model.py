"""Phi-3.5-vision as transformers' Phi-3 causal LM with the image embedding beside it.

Parameter names are the published checkpoint's (``model.vision_embed_tokens.*``
next to ``model.embed_tokens`` and ``model.layers.N.*``), so its safetensors
load as they are. Images enter as input embeddings: ``embed`` writes each
image's tokens where the prompt holds negative ids, without touching the ids,
and ``generate(inputs_embeds=...)`` does the rest with a KV cache.
"""

from __future__ import annotations

import torch
from transformers import Phi3Config, Phi3ForCausalLM

from docintel.engines.phi35v.config import VisionSettings
from docintel.engines.phi35v.vision import ImageEmbedding


class Phi35VisionForCausalLM(Phi3ForCausalLM):
    def __init__(self, config: Phi3Config, vision: VisionSettings) -> None:
        super().__init__(config)
        self.model.vision_embed_tokens = ImageEmbedding(vision, config.hidden_size)

    @property
    def image_embedding(self) -> ImageEmbedding:
        module: ImageEmbedding = self.model.vision_embed_tokens
        return module

    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[batch, length, hidden] input embeddings; image positions are ids below zero.

        Each row's image tokens take that row's image, rows in order.
        """
        embeds: torch.Tensor = self.model.embed_tokens(input_ids.clamp(min=0))
        image_positions = input_ids < 0
        if pixel_values is None or image_sizes is None:
            if image_positions.any():
                raise ValueError("the prompt has image tokens but no pixel values were given")
            return embeds
        features = torch.cat(self.image_embedding(pixel_values, image_sizes)).to(embeds.dtype)
        wanted = int(image_positions.sum())
        if wanted != features.shape[0]:
            raise ValueError(
                f"the prompt has {wanted} image tokens, the images give {features.shape[0]}"
            )
        mask = image_positions.unsqueeze(-1).expand_as(embeds)
        return embeds.masked_scatter(mask, features)
