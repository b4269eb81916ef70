"""Born-digital throughput: the whole ``docintel process`` command beside pdfplumber.

Two 60-page documents: one generated (two pages of prose, then a page with a
ruled table, repeated) and one made of the corpus's born-digital table pages
(camelot, tabula-java, docling) appended until it has 60 pages. docintel runs
the embedded default (SQLite, text layer, table detection and extraction, page
images rendered and stored), whole command from a fresh data folder, best of
three. pdfplumber reads the same pages in this process: text only, then text
and tables. Run on an otherwise idle machine; only ratios within one run count.

    python -m benchmarks.born_digital_speed [--corpus ../shared/corpus] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PAGES = 60


def generated(path: Path) -> Path:
    from tests.fixtures.documents import PdfPage, write_pdf
    from tests.fixtures.tables import SALES, TableSpec, table_page

    pages = []
    for k in range(PAGES):
        if k % 3 == 2:
            spec = TableSpec(SALES, text_above=[f"Table on page {k + 1}"])
            pages.append(table_page(spec))
        else:
            prose = [
                f"Page {k + 1}, line {j}: ordinary running text of a report." for j in range(40)
            ]
            pages.append(PdfPage(lines=prose, font_size=10))
    return write_pdf(path, pages)


def from_corpus(corpus: Path, path: Path) -> Path:
    from pypdf import PdfReader, PdfWriter

    sources = sorted(
        p
        for folder in ("camelot/expected_df", "tabula_java", "docling")
        for p in (corpus / folder).glob("*.pdf")
        if "protected" not in p.name
    )
    writer = PdfWriter()
    while len(writer.pages) < PAGES:
        for source in sources:
            for page in PdfReader(source).pages:
                if len(writer.pages) < PAGES:
                    writer.add_page(page)
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def docintel_process(pdf: Path) -> float:
    with tempfile.TemporaryDirectory() as state:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
        env["DOCINTEL_DATA_DIR"] = state
        argv = [sys.executable, "-m", "docintel", "process", str(pdf), "--out", f"{state}/out"]
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def pdfplumber_text(pdf: Path) -> float:
    import pdfplumber

    started = time.perf_counter()
    with pdfplumber.open(pdf) as document:
        for page in document.pages:
            page.extract_text()
    return time.perf_counter() - started


def pdfplumber_tables(pdf: Path) -> float:
    import pdfplumber

    started = time.perf_counter()
    with pdfplumber.open(pdf) as document:
        for page in document.pages:
            page.extract_text()
            page.extract_tables()
    return time.perf_counter() - started


def best(runs: int, measure: Callable[[Path], float], pdf: Path) -> float:
    return min(measure(pdf) for _ in range(runs))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    systems: dict[str, Callable[[Path], float]] = {
        "docintel process (whole command, tables on)": docintel_process,
        "pdfplumber text": pdfplumber_text,
        "pdfplumber text + tables": pdfplumber_tables,
    }
    with tempfile.TemporaryDirectory() as folder:
        documents = {"generated": generated(Path(folder) / "generated.pdf")}
        if args.corpus.exists():
            documents["corpus pages"] = from_corpus(args.corpus, Path(folder) / "corpus.pdf")
        print("| document | system | seconds | pages/s |")
        print("| --- | --- | ---: | ---: |")
        for name, pdf in documents.items():
            for system, measure in systems.items():
                seconds = best(args.runs, measure, pdf)
                print(f"| {name} | {system} | {seconds:.2f} | {PAGES / seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
