"""How many 336-px crops a table region should get from Phi-3.5-vision.

The published model reads pages with ``num_crops`` 4 to 16; regions are
smaller than pages, and a fixed budget either shrinks a large table until its
text is unreadable or spends image tokens on a small one. This measures, on the
table regions docintel finds in the shared corpus (born-digital pages rendered
at 200 dpi, the text layer's lines), for each policy:

* image tokens per region (prefill cost, and KV cache at 0.375 MiB per token in
  fp16 for the full model),
* the scale the HD transform applies (below 1: the region is shrunk),
* the text height the vision tower sees: each line's height times that scale;
  CLIP's patches are 14 px, and glyphs under ~10 px lose strokes.

Run: ``python benchmarks/phi35v_crops.py [--corpus ../shared/corpus]``. No
model is needed: the numbers follow from the transform, which the golden test
proves equal to the reference's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.tables_bench import DPI, cases
from docintel.document.render import render_page
from docintel.document.table_finder import crop_region, find_tables
from docintel.document.textlayer import extract_text_lines
from docintel.engines.phi35v.processor import crops_needed, hd_size, image_token_count

KV_MIB_PER_TOKEN = 0.375
READABLE_PX = 10.0

Policy = Callable[[int, int], int]
POLICIES: dict[str, Policy] = {
    "fixed 4": lambda w, h: 4,
    "fixed 9": lambda w, h: 9,
    "fixed 16": lambda w, h: 16,
    "adaptive <=9": lambda w, h: crops_needed(w, h, 9),
    "adaptive <=16": lambda w, h: crops_needed(w, h, 16),
}


def regions(corpus: Path) -> list[tuple[int, int, float]]:
    """(width, height, median line height in px) of every table region found."""
    found = []
    for case in cases(corpus):
        for number in case.pages:
            rendered = render_page(case.pdf, "application/pdf", number, DPI, max_page_pixels=10**9)
            lines = extract_text_lines(case.pdf, number, rendered.dpi)
            for region in find_tables(rendered.image, lines, exact_boxes=True):
                if region.kind != "table":
                    continue
                cropped = crop_region(rendered.image, lines, region.bbox)
                if cropped is None:
                    continue
                crop, inside, _ = cropped
                heights = [line.bbox[3] - line.bbox[1] for line in inside]
                if heights:
                    found.append((crop.width, crop.height, statistics.median(heights)))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    args = parser.parse_args(argv)
    found = regions(args.corpus)
    if not found:
        print("no table regions found", file=sys.stderr)
        return 1
    widths = sorted(w for w, _, _ in found)
    print(f"{len(found)} table regions at {DPI} dpi; width median {statistics.median(widths)} px,")
    print(
        f"range {widths[0]}-{widths[-1]} px; median text height {_median(h for *_, h in found)} px"
    )
    print()
    header = (
        f"{'policy':<14} {'crops':>6} {'tokens med':>10} {'tokens max':>10} "
        f"{'KV MiB max':>10} {'scale med':>9} {'scale min':>9} {'text px med':>11} "
        f"{'text px min':>11} "
        f"{'readable':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, policy in POLICIES.items():
        crops, tokens, scales, text, readable = [], [], [], [], 0
        for width, height, line_height in found:
            budget = policy(width, height)
            scale = max(hd_size(width, height, budget)) / max(width, height)
            crops.append(budget)
            tokens.append(image_token_count(width, height, budget))
            scales.append(scale)
            text.append(line_height * scale)
            readable += line_height * scale >= READABLE_PX
        print(
            f"{name:<14} {statistics.median(crops):>6} {statistics.median(tokens):>10} "
            f"{max(tokens):>10} {max(tokens) * KV_MIB_PER_TOKEN:>10.0f} "
            f"{statistics.median(scales):>9.2f} {min(scales):>9.2f} "
            f"{statistics.median(text):>11.1f} {min(text):>11.1f} {readable / len(found):>8.0%}"
        )
    return 0


def _median(values: object) -> float:
    return round(statistics.median(list(values)), 1)  # type: ignore[call-overload]


if __name__ == "__main__":
    raise SystemExit(main())
