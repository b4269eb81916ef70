"""Table extraction quality: docintel's CPU path beside camelot, pdfplumber and img2table.

Scores cell F1 on the table documents of the shared corpus (camelot, tabula-java
and docling ground truth). For each ground-truth table the best-matching
predicted table of the same pages counts; F1 is over non-empty (row, col, text)
cells after the best global row/column shift, texts matched when their fuzzy
ratio is at least 90 (texts compared with whitespace collapsed and trailing dot
leaders dropped, on every side). Then the same pages rendered to 200-dpi images
(image-only) are scored for docintel's scanned path (RapidOCR) and img2table
(OpenCV with its RapidOCR backend).

Run: ``python benchmarks/tables_bench.py [--corpus ../shared/corpus] [--skip-scanned]``.
Prints one row per document and system, then the means. Peers are optional:
a peer that is not installed is reported as missing.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rapidfuzz import fuzz

from docintel.document.render import render_page
from docintel.document.table_finder import crop_region, find_tables
from docintel.document.textlayer import extract_text_lines
from docintel.engines.base import EngineConfig, RegionInput
from docintel.engines.cpu_tables import CpuTableEngine
from docintel.engines.registry import get_ocr_engine
from docintel.geometry import TextLine

Grid = list[list[str]]
MATCH = 90.0
DPI = 200


@dataclass(frozen=True)
class Case:
    name: str
    pdf: Path
    pages: tuple[int, ...]
    truth: tuple[Grid, ...]


# -- ground truth ------------------------------------------------------------------------


_LEADERS = re.compile(r"(?:\s*\.){4,}\s*$")


def _clean(text: str) -> str:
    """Whitespace collapsed and trailing dot leaders dropped, for every system and the
    ground truth alike: leaders are filler, and OCR keeps or loses them at random."""
    return _LEADERS.sub("", " ".join(str(text).split()))


def _csv(path: Path) -> Grid:
    with path.open(newline="", encoding="utf-8") as handle:
        return [[_clean(cell) for cell in row] for row in csv.reader(handle)]


def _markdown_tables(path: Path) -> list[Grid]:
    tables: list[Grid] = []
    current: Grid = []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith("|"):
            cells = [_clean(c) for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def cases(corpus: Path) -> list[Case]:
    found: list[Case] = []
    camelot = corpus / "camelot" / "expected_df"
    for pdf in sorted(camelot.glob("*.pdf")):
        if "protected" in pdf.name:
            continue  # encrypted: the same page as health.pdf
        truth = tuple(_csv(p) for p in sorted(camelot.glob(f"{pdf.stem}.*.csv")))
        if truth:
            found.append(Case(f"camelot/{pdf.stem}", pdf, (1,), truth))
    tabula = corpus / "tabula_java"
    for pdf in sorted(tabula.glob("*.pdf")):
        expected = tabula / f"{pdf.stem}.expected.csv"
        if expected.exists():
            found.append(Case(f"tabula/{pdf.stem}", pdf, (1,), (_csv(expected),)))
    docling = corpus / "docling"
    for pdf in sorted(docling.glob("*.pdf")):
        expected = docling / f"{pdf.stem}.gt.md"
        tables = _markdown_tables(expected) if expected.exists() else []
        if tables:
            pages = tuple(range(1, _page_count(pdf) + 1))
            found.append(Case(f"docling/{pdf.stem}", pdf, pages, tuple(tables)))
    return found


def _page_count(pdf: Path) -> int:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    try:
        return len(document)
    finally:
        document.close()


# -- scoring -------------------------------------------------------------------------------


def cell_f1(truth: Grid, predicted: Grid) -> float:
    """F1 over non-empty cells after the best global row/column shift."""
    gold = [(r, c, t) for r, row in enumerate(truth) for c, t in enumerate(row) if t]
    pred = {(r, c): t for r, row in enumerate(predicted) for c, t in enumerate(row) if t}
    if not gold or not pred:
        return 0.0
    best = 0
    n_rows = max(len(predicted), 1)
    n_cols = max((len(r) for r in predicted), default=1)
    g_rows = len(truth)
    g_cols = max(len(r) for r in truth)
    for dr in range(-g_rows + 1, n_rows):
        for dc in range(-g_cols + 1, n_cols):
            hits = 0
            for r, c, text in gold:
                other = pred.get((r + dr, c + dc))
                if other is not None and fuzz.ratio(text, other) >= MATCH:
                    hits += 1
            best = max(best, hits)
    if best == 0:
        return 0.0
    precision, recall = best / len(pred), best / len(gold)
    return 2 * precision * recall / (precision + recall)


def score(case: Case, predicted: Sequence[Grid]) -> float:
    """Mean over the ground-truth tables of the best-matching predicted table's F1."""
    return statistics.mean(max((cell_f1(t, p) for p in predicted), default=0.0) for t in case.truth)


# -- systems ---------------------------------------------------------------------------------

System = Callable[[Case], list[Grid]]


def _docintel(case: Case, scanned: bool) -> list[Grid]:
    engine = CpuTableEngine()
    grids: list[Grid] = []
    for number in case.pages:
        image, lines = _page_input(case.pdf, number, scanned)
        for region in find_tables(image, lines, exact_boxes=not scanned):
            if region.kind != "table":
                continue
            cropped = crop_region(image, lines, region.bbox)
            if cropped is None:
                continue
            crop, inside, _ = cropped
            region_input = RegionInput("table", crop, tuple(inside), exact_boxes=not scanned)
            (result,) = engine.extract([region_input])
            if result.table is not None:
                grids.append(result.table.rows)
    return grids


def _page_input(pdf: Path, number: int, scanned: bool) -> tuple[Image.Image, list[TextLine]]:
    rendered = render_page(pdf, "application/pdf", number, DPI, max_page_pixels=10**9)
    if not scanned:
        return rendered.image, extract_text_lines(pdf, number, rendered.dpi)
    engine = get_ocr_engine(EngineConfig(name="rapidocr"))
    return rendered.image, engine.recognize([rendered.image])[0]


def docintel_digital(case: Case) -> list[Grid]:
    return _docintel(case, scanned=False)


def docintel_scanned(case: Case) -> list[Grid]:
    return _docintel(case, scanned=True)


def _pages_arg(case: Case) -> str:
    return ",".join(str(p) for p in case.pages)


def camelot_lattice(case: Case) -> list[Grid]:
    import camelot

    tables = camelot.read_pdf(str(case.pdf), pages=_pages_arg(case), flavor="lattice")
    return [[[_clean(v) for v in row] for row in t.df.values.tolist()] for t in tables]


def camelot_stream(case: Case) -> list[Grid]:
    import camelot

    tables = camelot.read_pdf(str(case.pdf), pages=_pages_arg(case), flavor="stream")
    return [[[_clean(v) for v in row] for row in t.df.values.tolist()] for t in tables]


def pdfplumber_tables(case: Case) -> list[Grid]:
    import pdfplumber

    grids: list[Grid] = []
    with pdfplumber.open(str(case.pdf)) as pdf:
        for number in case.pages:
            for table in pdf.pages[number - 1].extract_tables():
                grids.append([[_clean(v or "") for v in row] for row in table])
    return grids


_IMG2TABLE_OCR = None


def _img2table_ocr() -> object:
    global _IMG2TABLE_OCR
    if _IMG2TABLE_OCR is None:
        from img2table.ocr import RapidOCR

        _IMG2TABLE_OCR = RapidOCR()
    return _IMG2TABLE_OCR


def _img2table_images(images: list[Image.Image]) -> list[Grid]:
    from img2table.document import Image as Img2TableImage

    grids: list[Grid] = []
    for image in images:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        document = Img2TableImage(src=buffer.getvalue())
        tables = document.extract_tables(
            ocr=_img2table_ocr(), implicit_rows=True, borderless_tables=True
        )
        for table in tables:
            grids.append([[_clean(v or "") for v in row] for row in table.df.values.tolist()])
    return grids


def img2table_digital(case: Case) -> list[Grid]:
    from img2table.document import PDF

    document = PDF(src=str(case.pdf), pages=[p - 1 for p in case.pages], pdf_text_extraction=True)
    tables = document.extract_tables(
        ocr=_img2table_ocr(), implicit_rows=True, borderless_tables=True
    )
    return [
        [[_clean(v or "") for v in row] for row in table.df.values.tolist()]
        for page_tables in tables.values()
        for table in page_tables
    ]


def img2table_scanned(case: Case) -> list[Grid]:
    images = [
        render_page(case.pdf, "application/pdf", n, DPI, max_page_pixels=10**9).image
        for n in case.pages
    ]
    return _img2table_images(images)


# -- the run -----------------------------------------------------------------------------------


def _run(system: System, case: Case) -> tuple[float | None, float, str]:
    started = time.perf_counter()
    try:
        predicted = system(case)
    except ModuleNotFoundError as error:
        return None, 0.0, f"missing: {error.name}"
    except Exception as error:  # a peer that crashes on a page scores 0 there
        return 0.0, time.perf_counter() - started, f"{type(error).__name__}"
    return score(case, predicted), time.perf_counter() - started, ""


def _table(title: str, systems: dict[str, System], all_cases: list[Case]) -> None:
    names = list(systems)
    print(f"\n## {title}\n")
    print("| document | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---:" for _ in names) + " |")
    totals: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, float] = dict.fromkeys(names, 0.0)
    for case in all_cases:
        cells = []
        for name in names:
            value, spent, note = _run(systems[name], case)
            seconds[name] += spent
            if value is None:
                cells.append(note)
                continue
            totals[name].append(value)
            cells.append(f"{value:.3f}" + (f" ({note})" if note else ""))
        print(f"| {case.name} | " + " | ".join(cells) + " |", flush=True)
    means = [f"**{statistics.mean(totals[n]):.3f}**" if totals[n] else "-" for n in names]
    print("| **mean cell F1** | " + " | ".join(means) + " |")
    print("| seconds, all pages | " + " | ".join(f"{seconds[n]:.1f}" for n in names) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    parser.add_argument("--skip-scanned", action="store_true")
    parser.add_argument("--only", help="run only documents whose name contains this")
    args = parser.parse_args(argv)
    all_cases = [c for c in cases(args.corpus) if not args.only or args.only in c.name]
    if not all_cases:
        print(f"no table documents under {args.corpus}", file=sys.stderr)
        return 2
    _table(
        "Born-digital pages",
        {
            "docintel": docintel_digital,
            "camelot lattice": camelot_lattice,
            "camelot stream": camelot_stream,
            "pdfplumber": pdfplumber_tables,
            "img2table": img2table_digital,
        },
        all_cases,
    )
    if not args.skip_scanned:
        _table(
            f"The same pages as {DPI}-dpi images (scanned path)",
            {"docintel": docintel_scanned, "img2table": img2table_scanned},
            all_cases,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
