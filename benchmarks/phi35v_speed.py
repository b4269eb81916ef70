"""What Phi-3.5-vision costs: the full-size model reading table regions, CPU or GPU.

No weights can be downloaded here, so the published architecture is built
from its config (``tests/engines/phi35v/golden/full_size_config.json``) with
random weights: the arithmetic, memory traffic and so the timings are those of
the real checkpoint; only the answer is noise. Measures building the model,
the vision tower plus prefill for a batch of regions (image tokens from the
crop budget) up to the first token, and each decoding step after it (the
median), in the chosen dtype; on CUDA the peak memory too.

Run: ``python -m benchmarks.phi35v_speed [--device cuda] [--dtype bfloat16]
[--crops 4 9 16] [--batch 1 8] [--tokens 16]``. Needs about 9 GB of RAM (or
GPU memory) in bf16, 17 GB in float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from docintel.engines.phi35v.config import parse_config
from docintel.engines.phi35v.engine import chat_text
from docintel.engines.phi35v.loading import build_model, load_tokenizer, rebuild_buffers
from docintel.engines.phi35v.model import Phi35VisionForCausalLM
from docintel.engines.phi35v.processor import Phi35VisionProcessor
from docintel.engines.region_prompts import TABLE_PROMPT
from docintel.engines.vlm_extraction import Turn

GOLDEN = Path(__file__).parents[1] / "tests/engines/phi35v/golden"


def _region() -> Image.Image:
    """A 1,265 x 520 px table (the corpus's median region width at 200 dpi)."""
    image = Image.new("RGB", (1265, 520), "white")
    draw = ImageDraw.Draw(image)
    for row in range(12):
        y = 10 + row * 42
        draw.line((10, y, 1255, y), fill="black", width=2)
        for col in range(6):
            draw.text((20 + col * 205, y + 12), f"cell {row}.{col}", fill="black")
    return image


def _model(dtype: torch.dtype, attn: str) -> Phi35VisionForCausalLM:
    text, vision = parse_config(json.loads((GOLDEN / "full_size_config.json").read_text()))
    model = build_model(text, vision, attn, str(dtype).removeprefix("torch."))
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    rebuild_buffers(model, torch.device("cpu"))
    model.eval()
    return model


class _StepClock:
    """A logits processor that only notes when each decoding step's logits arrive."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.is_cuda:
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())
        return scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--crops", type=int, nargs="+", default=[4, 9])
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--attn", default="sdpa", help="sdpa, eager or flash_attention_2")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    cuda = args.device.startswith("cuda")

    from transformers import LogitsProcessorList

    started = time.perf_counter()
    model = _model(dtype, args.attn).to(args.device)
    build_s = time.perf_counter() - started
    tokenizer = load_tokenizer(GOLDEN / "tiny-phi35v")
    prompt = chat_text((Turn("user", TABLE_PROMPT),))
    attn = model.config._attn_implementation
    threads = torch.get_num_threads()
    print(f"{args.device}, {threads} threads, {args.dtype}, {attn}, build {build_s:.0f} s")
    print()
    print("| crops | batch | prompt tokens | prefill s | decode ms/step | tokens/s | peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for crops in args.crops:
        for size in args.batch:
            processor = Phi35VisionProcessor(tokenizer, crops)
            batch = processor([prompt] * size, [_region()] * size).to(args.device, dtype)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            clock = _StepClock()
            with torch.inference_mode():
                started = time.perf_counter()
                embeds = model.embed(batch.input_ids, batch.pixel_values, batch.image_sizes)
                model.generate(
                    inputs_embeds=embeds,
                    attention_mask=batch.attention_mask,
                    max_new_tokens=args.tokens,
                    min_new_tokens=args.tokens,
                    do_sample=False,
                    logits_processor=LogitsProcessorList([clock]),
                )
            prefill_s = clock.stamps[0] - started
            steps = [b - a for a, b in zip(clock.stamps, clock.stamps[1:], strict=False)]
            step_s = statistics.median(steps)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            print(
                f"| {crops} | {size} | {batch.input_ids.shape[1]} | {prefill_s:.2f} | "
                f"{step_s * 1000:.0f} | {size / step_s:.1f} | {peak:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
