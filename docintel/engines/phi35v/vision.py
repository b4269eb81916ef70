"""The image side: CLIP features of every crop turned into Phi-3 embeddings.

Per image: the 24x24 patch features of each crop (second-to-last CLIP layer,
class token dropped) merge 2x2 into 12x12 tokens four times as wide; the crops
form one grid, each grid row ends with the learned ``sub_GN``; then ``glb_GN``;
then the global view's 12x12 grid with its own row ends; an MLP projects it all
to the decoder's width. Only the real crops go through CLIP: the zero crops
that pad a batch to ``num_crops + 1`` would be thrown away.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from docintel.engines.phi35v.config import VisionSettings


class ClipTower(nn.Module):
    """CLIP's vision transformer under the checkpoint's name for it, ``vision_model``.

    transformers 5 flattened ``CLIPVisionModel`` (no inner ``vision_model``);
    this wrapper keeps the published parameter names on any version.
    """

    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__()
        model = CLIPVisionModel(config)
        self.vision_model: Any = getattr(model, "vision_model", model)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every layer's hidden states, the embeddings first."""
        out = self.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        return tuple(out.hidden_states)


class ImageEmbedding(nn.Module):
    def __init__(self, vision: VisionSettings, hidden_size: int) -> None:
        super().__init__()
        self.settings = vision
        self.img_processor = ClipTower(vision.clip)
        width = 4 * vision.image_dim_out
        # The checkpoint's own names: these are loaded from it.
        self.glb_GN = nn.Parameter(torch.zeros(1, 1, width))
        self.sub_GN = nn.Parameter(torch.zeros(1, 1, 1, width))
        self.img_projection = nn.Sequential(
            nn.Linear(width, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> list[torch.Tensor]:
        """One [image tokens, hidden] tensor per image.

        ``pixel_values``: [images, crops, 3, 336, 336], global view first;
        ``image_sizes``: [images, 2], (height, width) after the HD transform.
        """
        side = self.settings.crop_side
        grids = [(int(h) // side, int(w) // side) for h, w in image_sizes.tolist()]
        real = torch.cat([pixel_values[i, : 1 + r * c] for i, (r, c) in enumerate(grids)])
        merged = self._merged_features(real)
        embeddings: list[torch.Tensor] = []
        start = 0
        for rows, cols in grids:
            glb = merged[start]
            subs = merged[start + 1 : start + 1 + rows * cols]
            start += 1 + rows * cols
            n, m = subs.shape[1], subs.shape[2]
            grid = subs.reshape(rows, cols, n, m, -1).permute(0, 2, 1, 3, 4)
            grid = grid.reshape(rows * n, cols * m, -1)
            embeddings.append(
                torch.cat([self._with_row_ends(grid), self.glb_GN[0], self._with_row_ends(glb)])
            )
        flat = torch.cat(embeddings).to(device=self.glb_GN.device, dtype=self.glb_GN.dtype)
        projected = self.img_projection(flat)
        return list(projected.split([e.shape[0] for e in embeddings]))

    def _merged_features(self, crops: torch.Tensor) -> torch.Tensor:
        """[crops, side/2, side/2, 4 * width]: patch features merged 2x2."""
        dtype = self.img_processor.vision_model.embeddings.patch_embedding.weight.dtype
        patches = self.img_processor(crops.to(dtype))[self.settings.layer_idx][:, 1:]
        count, _, width = patches.shape
        side = self.settings.patches_per_side
        half = side // 2
        merged = patches.reshape(count, half, 2, half, 2, width).permute(0, 1, 3, 2, 4, 5)
        return merged.reshape(count, half, half, 4 * width)

    def _with_row_ends(self, grid: torch.Tensor) -> torch.Tensor:
        """[rows * (cols + 1), width]: ``sub_GN`` after every row of the token grid."""
        rows = grid.shape[0]
        ends = self.sub_GN[0].expand(rows, 1, -1).to(grid.dtype)
        return torch.cat([grid, ends], dim=1).reshape(-1, grid.shape[-1])
