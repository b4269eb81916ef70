"""Reading order on the corpus's multi-column pages: character error rate of page text.

The lines come from the engine docintel would use (the text layer of born-digital
pages, RapidOCR on scans); only the order and the joining of lines differ between
two versions of docintel, so run this at both and compare:

    python benchmarks/reading_order_bench.py [--corpus ../shared/corpus]

CER is the Levenshtein distance between whitespace-normalised texts divided by
the ground truth's length. The brochure scans share an approximate ground truth
(itself OCR output), so compare their rows across versions, not with other systems.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from docintel.document.reading_order import order_lines, page_text
from docintel.document.render import render_page
from docintel.document.sniff import sniff_media_type
from docintel.document.textlayer import extract_text_lines
from docintel.engines.base import EngineConfig
from docintel.engines.registry import get_ocr_engine

# (document, ground truth, whether its text layer is used): pages set in columns.
PAGES = [
    ("ocrmypdf/linn.png", "ocrmypdf/linn.approx_gt.txt", False),
    ("ocrmypdf/skew.pdf", "ocrmypdf/linn.approx_gt.txt", False),
    ("ocrmypdf/cardinal.pdf", "ocrmypdf/linn.approx_gt.txt", False),
    ("docling/table_mislabeled_as_picture.pdf", "docling/table_mislabeled_as_picture.gt.md", True),
    ("docling/2305.03393v1-pg9.pdf", "docling/2305.03393v1-pg9.gt.md", True),
]


def _plain(text: str) -> str:
    """Markdown to plain words: tables, headings' hashes and emphasis dropped."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("|")]
    words = re.sub(r"[#*_`]|<!--.*?-->", " ", "\n".join(kept))
    return " ".join(words.split())


def cer(hypothesis: str, truth: str) -> float:
    a, b = " ".join(hypothesis.split()), " ".join(truth.split())
    return Levenshtein.distance(a, b) / max(len(b), 1)


def read(path: Path, text_layer: bool) -> str:
    media_type = sniff_media_type(path.read_bytes()[:4096])
    rendered = render_page(path, media_type, 1, 300, max_page_pixels=10**9)
    if text_layer:
        lines = extract_text_lines(path, 1, rendered.dpi)
    else:
        lines = get_ocr_engine(EngineConfig(name="rapidocr")).recognize([rendered.image])[0]
    return page_text(order_lines(lines, rendered.image.width, rendered.image.height))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    args = parser.parse_args(argv)
    print("| page | lines from | CER |")
    print("| --- | --- | ---: |")
    values = []
    for document, truth, text_layer in PAGES:
        path = args.corpus / document
        if not path.exists():
            print(f"missing: {path}", file=sys.stderr)
            continue
        expected = (args.corpus / truth).read_text(encoding="utf-8")
        if truth.endswith(".md"):
            expected = _plain(expected)
        text = read(path, text_layer)
        value = cer(_plain(text) if truth.endswith(".md") else text, expected)
        values.append(value)
        source = "text layer" if text_layer else "RapidOCR"
        print(f"| {document} | {source} | {value:.3f} |", flush=True)
    if values:
        print(f"| **mean** | | **{sum(values) / len(values):.3f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
