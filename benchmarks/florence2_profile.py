"""Where a Florence-2 generate call spends its time: one batch, greedy vs beams, top kernels.

    python benchmarks/florence2_profile.py --arch large --device cuda --tiles 24

Builds a scripted checkpoint (see florence2_bench.py), loads it through the
engine, and times one batched ``_generate`` over ``--tiles`` page tiles with
1 and 3 beams (ms per decode step), then profiles one call with
torch.profiler and prints the ops that took the most device (or CPU) time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from benchmarks.florence2_bench import scripted_answer, synth_page  # noqa: E402
from docintel.engines.base import EngineConfig  # noqa: E402
from docintel.engines.florence2.engine import OCR_TASK, Florence2Ocr  # noqa: E402
from docintel.engines.florence2.tiling import tile_grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--arch", default="tiny", choices=("tiny", "base", "large"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto: bf16 or fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--tiles", type=int, default=24)
    parser.add_argument("--answer-tokens", type=int, default=200)
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from tests.fixtures.tiny_florence2 import build_tiny_florence2

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_florence2(
            Path(tmp), answer=scripted_answer(args.answer_tokens), arch=args.arch
        )
        config = EngineConfig(
            name="florence2",
            model=str(model),
            device=args.device,
            dtype=args.dtype,
            batch_size=args.tiles,
        )
        engine = Florence2Ocr(config)
        on_cuda = engine.loaded.device.startswith("cuda")
        print("attention:", engine.loaded.model.config.text_config._attn_implementation)
        crops: list[Image.Image] = []
        page_index = 0
        while len(crops) < args.tiles:
            page = synth_page(page_index)
            for tile in tile_grid(page.width, page.height, 1024, 128):
                crops.append(page.crop(tile.box))
            page_index += 1
        crops = crops[: args.tiles]
        prompts = [OCR_TASK] * len(crops)

        def timed(beams: int) -> tuple[float, int]:
            engine.num_beams = beams
            if on_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            generations = engine._generate(crops, prompts)
            if on_cuda:
                torch.cuda.synchronize()
            steps = max(g.new_tokens for g in generations)
            return time.perf_counter() - start, steps

        timed(1)  # warm-up
        for beams in (1, 3):
            seconds, steps = timed(beams)
            print(
                f"beams={beams} tiles={len(crops)} steps={steps} seconds={seconds:.2f} "
                f"ms/step={1000 * seconds / steps:.1f}",
                flush=True,
            )
        engine.max_new_tokens = 64  # a profile of the first 64 steps is enough
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
        engine.num_beams = 3
        with profile(activities=activities) as prof:
            engine._generate(crops, prompts)
            if on_cuda:
                torch.cuda.synchronize()
        sort = "cuda_time_total" if on_cuda else "cpu_time_total"
        table = prof.key_averages().table(
            sort_by=sort, row_limit=args.rows, max_name_column_width=60
        )
        print(table)
        engine.close()


if __name__ == "__main__":
    main()
