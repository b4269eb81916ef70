"""Phi-3.5-vision's input side: the HD image transform, pixel tensors and prompt ids.

Reproduces the published processor's output exactly (the golden test checks
input ids and pixels against it), without its in-place tricks:

* HD transform: a portrait image is transposed; the largest ``scale`` whose
  crop grid ``scale x ceil(scale / ratio)`` fits ``num_crops`` is chosen; the
  width is resized to ``336 * scale`` (bilinear, keeping the ratio) and the
  height padded with white to a multiple of 336, centred; then transposed back.
* Pixels: scaled to [0, 1], normalised with CLIP's mean and std; a 336x336
  global view (bicubic) first, then the 336x336 crops row by row, zero crops
  up to ``num_crops + 1``.
* Ids: the prompt is split at its image tags, each piece tokenised on its own
  (with the tokenizer's own special tokens), and image ``k`` is written as
  ``-k`` repeated once per image token; padding is on the left.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

CROP = 336
TOKENS_PER_CROP = 144  # 24x24 patches merged 2x2
TOKENS_PER_ROW = 12  # merged tokens along one crop's side
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_TAG = re.compile(r"<\|image_(\d+)\|>")


def chat_prompt(prompt: str) -> str:
    """The chat format the model was tuned on, one image first."""
    return f"<|user|>\n<|image_1|>\n{prompt}<|end|>\n<|assistant|>\n"


def crop_grid(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """(rows, cols) of 336-px crops the HD transform gives an image of this size."""
    padded_w, padded_h = hd_size(width, height, num_crops)
    return padded_h // CROP, padded_w // CROP


def hd_size(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """(width, height) of the image after the HD transform."""
    transposed = width < height
    if transposed:
        width, height = height, width
    new_w, new_h = _scaled(width, height, num_crops)
    padded_h = math.ceil(new_h / CROP) * CROP
    return (padded_h, new_w) if transposed else (new_w, padded_h)


def crops_needed(width: int, height: int, max_crops: int) -> int:
    """The smallest crop budget that shows the image at its own resolution or more.

    A region is usually much smaller than a page: a fixed budget either
    shrinks a large table until its text is unreadable or spends thousands of
    image tokens on a small one. The budget grows until the long side is
    not downscaled, up to ``max_crops``.
    """
    long_side = max(width, height)
    for budget in range(1, max_crops + 1):
        if max(hd_size(width, height, budget)) >= long_side:
            return budget
    return max_crops


def image_token_count(width: int, height: int, num_crops: int) -> int:
    """Image tokens for an image of this (original) size."""
    return grid_token_count(*crop_grid(width, height, num_crops))


def grid_token_count(rows: int, cols: int) -> int:
    """The crops with a separator after each row, ``glb_GN``, the global view with its own."""
    return (rows * cols + 1) * TOKENS_PER_CROP + 1 + (rows + 1) * TOKENS_PER_ROW


def _scaled(width: int, height: int, num_crops: int) -> tuple[int, int]:
    """The landscape image's size once its width is a whole number of crops."""
    ratio = width / height
    scale = 1
    while scale * math.ceil(scale / ratio) <= num_crops:
        scale += 1
    scale -= 1
    if scale < 1:
        raise ValueError(f"an image of {width}x{height} does not fit {num_crops} crops")
    new_w = scale * CROP
    # max(1, ...): a sliver of a region (the reference fails on it) still gets a row.
    return new_w, max(1, int(new_w / ratio))


def hd_transform(image: Image.Image, num_crops: int) -> Image.Image:
    """The image resized and padded to a grid of 336-px crops (RGB)."""
    image = image.convert("RGB")
    transposed = image.width < image.height
    if transposed:
        image = image.transpose(Image.Transpose.TRANSPOSE)
    new_w, new_h = _scaled(image.width, image.height, num_crops)
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    padded_h = math.ceil(new_h / CROP) * CROP
    top = (padded_h - new_h) // 2
    canvas = Image.new("RGB", (new_w, padded_h), (255, 255, 255))
    canvas.paste(image, (0, top))
    return canvas.transpose(Image.Transpose.TRANSPOSE) if transposed else canvas


def pixel_crops(image: Image.Image, num_crops: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """([num_crops + 1, 3, 336, 336] normalised crops, (height, width) after the transform)."""
    hd = hd_transform(image, num_crops)
    pixels = torch.from_numpy(np.asarray(hd, dtype=np.uint8).copy()).permute(2, 0, 1)
    pixels = pixels.to(torch.float32).div(255)
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1, 1)
    pixels = (pixels - mean) / std
    height, width = pixels.shape[1:]
    glb = torch.nn.functional.interpolate(pixels[None], size=(CROP, CROP), mode="bicubic")
    rows, cols = height // CROP, width // CROP
    crops = (
        pixels.reshape(3, rows, CROP, cols, CROP).permute(1, 3, 0, 2, 4).reshape(-1, 3, CROP, CROP)
    )
    stack = torch.zeros(num_crops + 1, 3, CROP, CROP, dtype=torch.float32)
    stack[0] = glb[0]
    stack[1 : 1 + rows * cols] = crops
    return stack, (height, width)


@dataclass(frozen=True, slots=True)
class Batch:
    """Model inputs for several prompts, one image each, left-padded."""

    input_ids: torch.Tensor  # [batch, length]; image positions hold -1
    attention_mask: torch.Tensor  # [batch, length]
    pixel_values: torch.Tensor  # [batch, num_crops + 1, 3, 336, 336]
    image_sizes: torch.Tensor  # [batch, 2]: (height, width) after the HD transform

    def to(self, device: str | torch.device, dtype: torch.dtype) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.pixel_values.to(device=device, dtype=dtype),
            self.image_sizes.to(device),
        )


class Phi35VisionProcessor:
    """Prompt ids and pixels for Phi-3.5-vision, with the checkpoint's tokenizer."""

    def __init__(self, tokenizer: Any, num_crops: int = 4) -> None:
        if num_crops < 1:
            raise ValueError("num_crops must be at least 1")
        self.tokenizer = tokenizer
        self.num_crops = num_crops
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else tokenizer.eos_token_id

    def prompt_ids(self, text: str, image_tokens: Sequence[int]) -> list[int]:
        """Ids of a prompt whose ``<|image_k|>`` tags stand for images with these token counts."""
        pieces = IMAGE_TAG.split(text)
        ids: list[int] = list(self.tokenizer(pieces[0]).input_ids)
        for tag, piece in zip(pieces[1::2], pieces[2::2], strict=True):
            k = int(tag)
            if not 1 <= k <= len(image_tokens):
                raise ValueError(f"<|image_{k}|> names no image (there are {len(image_tokens)})")
            ids.extend([-k] * image_tokens[k - 1])
            ids.extend(self.tokenizer(piece).input_ids)
        return ids

    def __call__(
        self,
        prompts: Sequence[str],
        images: Sequence[Image.Image],
        num_crops: Sequence[int] | None = None,
    ) -> Batch:
        """One batch row per (prompt, image); each prompt holds ``<|image_1|>`` once.

        ``num_crops``: a crop budget per image (default: the processor's); the
        crop stacks are zero-padded to the largest budget plus one.
        """
        if len(prompts) != len(images) or not prompts:
            raise ValueError("give one image per prompt, at least one")
        budgets = list(num_crops) if num_crops is not None else [self.num_crops] * len(images)
        if len(budgets) != len(images) or min(budgets) < 1:
            raise ValueError("give one crop budget of at least 1 per image")
        depth = max(budgets) + 1
        stacks, sizes, rows = [], [], []
        for prompt, image, budget in zip(prompts, images, budgets, strict=True):
            stack, (height, width) = pixel_crops(image, budget)
            if stack.shape[0] < depth:
                padding = stack.new_zeros(depth - stack.shape[0], *stack.shape[1:])
                stack = torch.cat([stack, padding])
            count = grid_token_count(height // CROP, width // CROP)
            rows.append(self.prompt_ids(prompt, [count]))
            stacks.append(stack)
            sizes.append((height, width))
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, length - len(row) :] = 1
        return Batch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=torch.stack(stacks),
            image_sizes=torch.tensor(sizes, dtype=torch.long),
        )
