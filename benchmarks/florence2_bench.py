"""Throughput of the Florence-2 OCR engine by batch size and dtype.

    python benchmarks/florence2_bench.py                      # tiny scripted model, CPU
    python benchmarks/florence2_bench.py --model florence-community/Florence-2-base \\
        --device cuda --dtypes bfloat16,float16 --batch-sizes 4,8,16 --pages 20

Pages are synthesized (dense text rendered with PIL at letter size, 200 dpi)
so no corpus is needed. Each configuration builds the engine through the
production path, warms up on one page, then reads all pages in one
``recognize`` call (tiles from all pages share batches, as in a GPU worker).

Peak memory is torch.cuda.max_memory_allocated on CUDA, and the peak process
RSS sampled during the run on CPU. Without --model a tiny checkpoint is built
whose weights spell a fixed 8-line answer (about 180 tokens, then </s>) for
every tile, like a real model on a moderately dense tile: the numbers measure
the machinery (tiling, batching, generate, parsing, merging), not Florence-2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from docintel.engines.base import EngineConfig  # noqa: E402
from docintel.engines.florence2.engine import Florence2Ocr  # noqa: E402

WORDS = (
    "invoice",
    "total",
    "amount",
    "due",
    "payment",
    "terms",
    "net",
    "thirty",
    "days",
    "account",
    "number",
    "reference",
    "quantity",
    "description",
    "unit",
    "price",
    "tax",
    "subtotal",
    "balance",
    "statement",
    "period",
    "customer",
    "address",
    "delivery",
    "order",
    "date",
    "shipped",
    "items",
    "remarks",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def synth_page(seed: int, width: int = 1700, height: int = 2200) -> Image.Image:
    """A letter page at 200 dpi: 10 pt text (28 px lines) in one column, like a report."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    font = _font(24)
    y = 150
    for line in range(60):
        count = 8 + (seed * 7 + line * 13) % 6
        text = " ".join(WORDS[(seed + line * 3 + i * 5) % len(WORDS)] for i in range(count))
        draw.text((150, y), text, fill="black", font=font)
        y += 32
    return page


class PeakRss:
    """Samples this process's RSS in a thread: the peak of one run, not of the process."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@dataclass
class Row:
    batch_size: int
    dtype: str
    pages: int
    tiles: int
    tokens: int
    seconds: float
    peak_mib: float


def run_one(
    model: str,
    device: str,
    dtype: str,
    batch_size: int,
    pages: list[Image.Image],
    options: dict[str, int],
) -> Row:
    import torch

    config = EngineConfig(
        name="florence2",
        model=model,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        options=tuple(sorted(options.items())),
    )
    engine = Florence2Ocr(config)
    try:
        on_cuda = engine.loaded.device.startswith("cuda")
        engine.recognize(pages[:1])  # warm-up: kernels, allocator, caches
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with PeakRss() as rss:
            start = time.perf_counter()
            engine.recognize(pages)
            if on_cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() if on_cuda else rss.peak
        run = engine.last_run
        return Row(
            batch_size, dtype, len(pages), run.tiles, run.generated_tokens, seconds, peak / 2**20
        )
    finally:
        engine.close()


def print_table(rows: list[Row], memory_label: str) -> None:
    header = (
        f"| batch | dtype    | pages/s | tiles/s | gen tokens/s | tiles | tokens | seconds "
        f"| {memory_label} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {r.batch_size:5d} | {r.dtype:8s} | {r.pages / r.seconds:7.2f} "
            f"| {r.tiles / r.seconds:7.2f} | {r.tokens / r.seconds:12.1f} | {r.tiles:5d} "
            f"| {r.tokens:6d} | {r.seconds:7.2f} | {r.peak_mib:{len(memory_label)}.0f} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint id or directory (default: tiny scripted)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--num-beams", type=int, default=0, help="0: engine default by device")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="0: the model's limit")
    parser.add_argument("--min-tile-size", type=int, default=0, help="0: engine default")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)

    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    options: dict[str, int] = {"tile_size": args.tile_size, "overlap": args.overlap}
    tmp = None
    model = args.model
    if model is None:
        from tests.fixtures.tiny_florence2 import build_tiny_florence2, loc

        tmp = tempfile.TemporaryDirectory(prefix="tiny-florence2-")
        answer = "".join(
            f"{WORDS[i]} {WORDS[i + 3]} {i}.00" + loc(50, y, 900, y, 900, y + 20, 50, y + 20)
            for i, y in enumerate(range(50, 850, 100))
        )
        model = str(build_tiny_florence2(Path(tmp.name), answer=answer))
    if args.max_new_tokens:
        options["max_new_tokens"] = args.max_new_tokens
    if args.min_tile_size:
        options["min_tile_size"] = args.min_tile_size
    if args.num_beams:
        options["num_beams"] = args.num_beams

    pages = [synth_page(i) for i in range(args.pages)]
    device = args.device
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    print(
        f"model={args.model or 'tiny scripted (built in a temp dir)'} device={device} "
        f"torch threads={torch.get_num_threads()} pages={len(pages)} "
        f"page={pages[0].width}x{pages[0].height} options={options}"
    )
    rows = []
    try:
        for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
            for batch_size in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
                rows.append(run_one(model, device, dtype, batch_size, pages, options))
    finally:
        if tmp is not None:
            tmp.cleanup()
    print_table(rows, "peak CUDA MiB" if on_cuda else "peak RSS MiB")


if __name__ == "__main__":
    main()
