"""Throughput of the Florence-2 OCR engine by batch size and dtype.

    python benchmarks/florence2_bench.py                      # tiny scripted model, CPU
    python benchmarks/florence2_bench.py --model /models/Florence-2-large \\
        --device cuda --dtypes bfloat16,float16 --batch-sizes 4,8,16,32 --pages 20

Pages are synthesized (dense text rendered with PIL at letter size, 200 dpi)
so no corpus is needed. Each configuration runs in a fresh process (so its
peak memory is its own, and a crash or an out-of-memory at batch 1 costs one
row, not the table), builds the engine through the production path, warms up
on one page, then reads all pages in one ``recognize`` call (tiles from all
pages share batches, as in a GPU worker); with ``--repeat`` the fastest of
the timed calls is kept.

Columns: pages/s, tiles/s and generated tokens/s of the timed call; ``lines``
the text lines it returned after merging (a check that the answers parsed); ``oom``
the out-of-memory retries over all calls (the engine halved the batch: the
row then did not run at the batch size it is labelled with) and ``end batch``
the batch size it ended with; ``splits`` the tiles read again in quarters because they hit the
token limit. Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA; on
CPU the peak resident set of the process during the timed call ("peak RSS",
model and libraries included) and its growth over the call ("+run").

Without --model a checkpoint is built in a temp dir whose weights spell a
fixed answer for every tile (``--answer-tokens``, about 200 by default: 8
lines, then </s>), like a real model on a moderately dense tile. With
``--arch tiny`` (default) it is a tiny model: the numbers measure the
machinery (tiling, batching, generate, parsing, merging), not Florence-2; it
runs with one torch thread unless --threads says otherwise (the tiny model
gains nothing from threads, and on a shared machine OpenMP spin-waiting makes
it several times slower). ``--arch base`` / ``large`` build the published
Florence-2 shapes with scripted weights: the compute and memory of the real
model where its weights cannot be downloaded (a GPU lent without a hub). The
scripted checkpoint keeps three untied vocabulary matrices where the real one
ties them (+118M parameters for base, +157M for large), so its ``weights``
column is that much above the real model's; the per-batch growth is not
affected.

On CUDA, ``weights MiB`` is the memory allocated once the model is loaded and
``peak CUDA MiB`` the peak during the timed call; ``--memory-fraction`` caps
what the process may take (``torch.cuda.set_per_process_memory_fraction``),
so the out-of-memory path runs for real: the engine halves its batch.

The GPU numbers in the README came from ``benchmarks/florence2_gpu.sh``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
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


def _answer_of(lines: int) -> str:
    from tests.fixtures.tiny_florence2 import loc

    step = 960 // lines
    parts = []
    for i in range(lines):
        y = 20 + i * step
        words = f"{WORDS[i % len(WORDS)]} {WORDS[(i + 3) % len(WORDS)]} {i}.00"
        parts.append(words + loc(50, y, 900, y, 900, y + step // 2, 50, y + step // 2))
    return "".join(parts)


def scripted_answer(tokens: int) -> str:
    """Lines of OCR output with boxes, about ``tokens`` long (0: 8 lines)."""
    from tests.fixtures.tiny_florence2 import answer_length

    if tokens <= 0:
        return _answer_of(8)
    lines = 1
    while lines < 200 and answer_length(_answer_of(lines + 1)) <= tokens:
        lines += 1
    return _answer_of(lines)


class PeakRss:
    """Samples this process's RSS in a thread: the peak of one run, not of the process."""

    def __init__(self, interval: float = 0.01) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        import psutil

        return int(psutil.Process().memory_info().rss)

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
    tiles: int = 0
    tokens: int = 0
    seconds: float = 0.0
    peak_mib: float = 0.0
    run_mib: float = 0.0
    oom_retries: int = 0
    end_batch: int = 0
    splits: int = 0
    weights_mib: float = 0.0
    lines: int = 0
    error: str = ""


@dataclass(frozen=True)
class Job:
    model: str
    device: str
    dtype: str
    batch_size: int
    pages: int
    options: tuple[tuple[str, int], ...]
    threads: int
    repeat: int
    memory_fraction: float = 0.0


def run_one(job: Job) -> Row:
    """One configuration, in the calling process."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    if job.threads:
        torch.set_num_threads(job.threads)
    if job.memory_fraction and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(job.memory_fraction)
    pages = [synth_page(i) for i in range(job.pages)]
    config = EngineConfig(
        name="florence2",
        model=job.model,
        device=job.device,
        dtype=job.dtype,
        batch_size=job.batch_size,
        options=job.options,
    )
    engine = Florence2Ocr(config)
    try:
        on_cuda = engine.loaded.device.startswith("cuda")
        weights = torch.cuda.memory_allocated() if on_cuda else 0
        engine.recognize(pages[:1])  # warm-up: kernels, allocator, caches
        oom_retries = engine.last_run.oom_retries
        baseline = PeakRss.rss()  # after the warm-up: the model and the runtime
        best_seconds, best_run, peak, peak_rss = math.inf, engine.last_run, 0, 0
        lines = 0
        for _ in range(max(1, job.repeat)):
            if on_cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            with PeakRss() as rss:
                start = time.perf_counter()
                found = engine.recognize(pages)
                if on_cuda:
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            # Time: the best of the timed calls; memory: the worst.
            peak_rss = max(peak_rss, rss.peak)
            peak = max(peak, torch.cuda.max_memory_allocated() if on_cuda else rss.peak)
            oom_retries += engine.last_run.oom_retries
            if seconds < best_seconds:
                best_seconds, best_run = seconds, engine.last_run
                lines = sum(len(page_lines) for page_lines in found)
        return Row(
            job.batch_size,
            job.dtype,
            len(pages),
            tiles=best_run.tiles,
            tokens=best_run.generated_tokens,
            seconds=best_seconds,
            peak_mib=peak / 2**20,
            run_mib=(peak_rss - baseline) / 2**20,
            oom_retries=oom_retries,
            end_batch=engine.max_batch,
            splits=best_run.splits,
            weights_mib=weights / 2**20,
            lines=lines,
        )
    finally:
        engine.close()


def run_isolated(job: Job) -> Row:
    """One configuration in a fresh process: its own peak memory, its own crash."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(run_one, job).result()
        except Exception as error:  # one failed row must not cost the table
            message = f"{type(error).__name__}: {error}".splitlines()[0][:120]
            return Row(job.batch_size, job.dtype, job.pages, error=message)


def format_row(r: Row, on_cuda: bool) -> str:
    if r.error:
        return f"| {r.batch_size:5d} | {r.dtype:8s} | failed: {r.error} |"
    cells = [
        f"{r.batch_size:5d}",
        f"{r.dtype:8s}",
        f"{r.pages / r.seconds:7.2f}",
        f"{r.tiles / r.seconds:7.2f}",
        f"{r.tokens / r.seconds:12.1f}",
        f"{r.tiles:5d}",
        f"{r.tokens:6d}",
        f"{r.seconds:7.2f}",
        f"{r.oom_retries:3d}",
        f"{r.end_batch:9d}",
        f"{r.splits:6d}",
        f"{r.lines:5d}",
    ]
    if on_cuda:
        cells += [f"{r.weights_mib:11.0f}", f"{r.peak_mib:13.0f}"]
    else:
        cells += [f"{r.peak_mib:12.0f}", f"{r.run_mib:8.0f}"]
    return "| " + " | ".join(cells) + " |"


def print_table(rows: list[Row], on_cuda: bool) -> None:
    memory = "| weights MiB | peak CUDA MiB |" if on_cuda else "| peak RSS MiB | +run MiB |"
    header = (
        "| batch | dtype    | pages/s | tiles/s | gen tokens/s | tiles | tokens | seconds "
        f"| oom | end batch | splits | lines {memory}"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for row in rows:
        print(format_row(row, on_cuda))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model", help="checkpoint id or directory (default: built, scripted)")
    parser.add_argument(
        "--arch",
        choices=("tiny", "base", "large"),
        default="tiny",
        help="shape of the built checkpoint when no --model is given",
    )
    parser.add_argument(
        "--answer-tokens", type=int, default=0, help="scripted answer length (0: 8 lines)"
    )
    parser.add_argument(
        "--memory-fraction", type=float, default=0.0, help="CUDA memory cap for the process"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--num-beams", type=int, default=0, help="0: engine default (greedy)")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="0: the model's limit")
    parser.add_argument("--min-tile-size", type=int, default=0, help="0: engine default")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: 1 for the tiny model)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="timed calls; the fastest counts")
    parser.add_argument(
        "--no-isolate", action="store_true", help="run every configuration in this process"
    )
    args = parser.parse_args(argv)

    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    tiny = args.model is None and args.arch == "tiny"
    threads = args.threads or (1 if tiny else 0)
    options: dict[str, int] = {"tile_size": args.tile_size, "overlap": args.overlap}
    if args.max_new_tokens:
        options["max_new_tokens"] = args.max_new_tokens
    if args.min_tile_size:
        options["min_tile_size"] = args.min_tile_size
    if args.num_beams:
        options["num_beams"] = args.num_beams
    device = args.device
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    page = synth_page(0)
    load = "n/a" if not hasattr(os, "getloadavg") else f"{os.getloadavg()[0]:.2f}"
    print(
        f"model={args.model or args.arch + ' scripted (built in a temp dir)'} device={device} "
        f"torch threads={threads or torch.get_num_threads()} pages={args.pages} "
        f"page={page.width}x{page.height} options={options} repeat={args.repeat} "
        f"load average={load} cpus={os.cpu_count()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="tiny-florence2-") as tmp:
        model = args.model
        if model is None:
            from tests.fixtures.tiny_florence2 import answer_length, build_tiny_florence2

            answer = scripted_answer(args.answer_tokens)
            print(f"scripted answer: {answer_length(answer)} tokens", flush=True)
            model = str(build_tiny_florence2(Path(tmp), answer=answer, arch=args.arch))
        run = run_one if args.no_isolate else run_isolated
        rows = []
        for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
            for batch_size in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
                job = Job(
                    model=model,
                    device=device,
                    dtype=dtype,
                    batch_size=batch_size,
                    pages=args.pages,
                    options=tuple(sorted(options.items())),
                    threads=threads,
                    repeat=args.repeat,
                    memory_fraction=args.memory_fraction,
                )
                rows.append(run(job))
                # Each row as it comes: a run cut short still leaves its rows.
                print("done:", format_row(rows[-1], on_cuda), file=sys.stderr, flush=True)
    print_table(rows, on_cuda)


if __name__ == "__main__":
    main()
