"""Worker memory on long documents: does a worker's RSS stay flat from 30 to 300 pages?

Run from the repository root (needs the local PostgreSQL and Redis)::

    python -m benchmarks.memory_bench                          # 30 and 300 scanned pages
    python -m benchmarks.memory_bench --pages 30,300,1000 --kind digital

For each page count a PDF is generated (``scanned``: image-only pages, every page OCR'd;
``digital``: born-digital pages read from their text layer; ``mixed``: every third page
scanned), then sent through ``--workers`` real ``docintel worker`` processes on a
throwaway PostgreSQL database and a leased Redis database, each page count on fresh
workers. RSS is sampled every 0.2 s per worker tree (the worker, its pool process and
poppler children). The table shows, per run, the largest worker's peak over the whole
document and over its first and last quarter: memory that grows with the page count
shows up as a last quarter above the first, and as a 300-page peak above the 30-page one.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.pipeline_bench import (
    MIB,
    Peak,
    TreeSampler,
    WorkerPool,
    db_upgrade,
    docintel_env,
    finish_client,
    log,
    make_warmup_docs,
    markdown_table,
    pg_database,
    redis_database,
    run_client,
    threads_per_worker,
)

# A word list reads better as one string than as a 29-line literal.
WORDS = (  # noqa: SIM905
    "invoice total amount due payment terms net thirty days account number reference "
    "quantity description unit price tax subtotal balance statement period customer "
    "address delivery order date shipped items remarks"
).split()


def page_text(number: int, lines: int = 24) -> str:
    """Distinct, text-like lines, so that no two pages (or documents) are the same."""
    out = [f"Page {number} of the memory benchmark"]
    for i in range(lines):
        words = [WORDS[(number * 7 + i * 3 + k * 5) % len(WORDS)] for k in range(8)]
        out.append(f"{i + 1:02d} " + " ".join(words) + f" {number * 100 + i}.00")
    return "\n".join(out)


def make_document(folder: Path, pages: int, kind: str) -> Path:
    from tests.fixtures import documents as fx

    texts = [page_text(n) for n in range(1, pages + 1)]
    path = folder / f"memory-{kind}-{pages}-{secrets.token_hex(3)}.pdf"
    if kind == "digital":
        return fx.make_text_pdf(path, texts)
    if kind == "scanned":
        return fx.make_scanned_pdf(path, texts, dpi=100)
    return fx.make_mixed_pdf(path, texts, scanned=set(range(1, pages + 1, 3)), dpi=100)


@dataclass
class Run:
    pages: int
    kind: str
    seconds: float
    status: str
    whole: Peak
    first_quarter: Peak
    last_quarter: Peak
    after_warmup: Peak


def run_one(pages: int, kind: str, workers: int, work: Path, timeout_s: float) -> Run:
    folder = work / f"{kind}-{pages}"
    folder.mkdir(parents=True)
    document = make_document(folder, pages, kind)
    log(f"{pages} {kind} pages: {document.stat().st_size / MIB:.1f} MiB")
    with pg_database() as db_url, redis_database() as broker, TreeSampler() as sampler:
        env = docintel_env(
            folder / "data",
            database_url=db_url,
            broker_url=broker,
            storage_url=(folder / "blobs").resolve().as_uri(),
            ocr_threads=threads_per_worker(workers, 1),
        )
        db_upgrade(env)
        pool = WorkerPool(env, folder, workers, concurrency=1)
        try:
            pool.start()
            for label, proc in zip(pool.labels, pool.procs, strict=True):
                sampler.watch(label, proc.pid)
            for round_ in range(1, 6):  # until every pool process has RapidOCR loaded
                warm = make_warmup_docs(folder / "warmup", f"{round_}-{secrets.token_hex(3)}")
                proc, result = run_client(env, [("warm-up", warm)], folder, timeout_s)
                finish_client(proc, result, timeout_s)
                if pool.all_loaded_ocr():
                    break
            settle = time.time()
            time.sleep(1.0)
            after_warmup = _largest(sampler, pool.labels, settle, time.time())
            proc, result = run_client(env, [("document", [document])], folder, timeout_s)
            data = finish_client(proc, result, timeout_s + 60)
        finally:
            for label in pool.labels:
                sampler.unwatch(label)
            pool.stop()
        for line in pool.errors()[:10]:
            log(line)
    group = data["groups"][0]
    t0, t1 = group["t0"], group["t1"]
    quarter = (t1 - t0) / 4
    row = group["rows"][0]
    status = (row.get("document") or {}).get("status") or row.get("error") or "?"
    return Run(
        pages=pages,
        kind=kind,
        seconds=t1 - t0,
        status=status,
        whole=_largest(sampler, pool.labels, t0, t1),
        first_quarter=_largest(sampler, pool.labels, t0, t0 + quarter),
        last_quarter=_largest(sampler, pool.labels, t1 - quarter, t1),
        after_warmup=after_warmup,
    )


def _largest(sampler: TreeSampler, labels: Sequence[str], since: float, until: float) -> Peak:
    """The worker with the biggest tree in the window; its own largest process beside it."""
    return max(
        (sampler.peak([label], since, until) for label in labels),
        key=lambda p: p.tree,
        default=Peak(),
    )


def report(runs: Sequence[Run], workers: int) -> str:
    header = [
        "pages",
        "kind",
        "status",
        "seconds",
        "pages/s",
        "after warm-up MiB",
        "first quarter MiB",
        "last quarter MiB",
        "peak MiB",
        "peak tree MiB",
    ]
    rows = [
        [
            r.pages,
            r.kind,
            r.status,
            f"{r.seconds:.0f}",
            f"{r.pages / r.seconds:.2f}",
            r.after_warmup.mib()[0],
            r.first_quarter.mib()[0],
            r.last_quarter.mib()[0],
            r.whole.mib()[0],
            r.whole.mib()[1],
        ]
        for r in runs
    ]
    intro = (
        f"{workers} worker processes (--concurrency=1, DOCINTEL_OCR_THREADS="
        f"{threads_per_worker(workers, 1)}), Postgres + Redis. MiB columns: the "
        "largest single process of the busiest worker tree (the pool process doing the "
        "work); 'peak tree' adds the worker's parent and poppler children.\n\n"
    )
    return intro + markdown_table(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", default="30,300", help="comma-separated page counts")
    parser.add_argument("--kind", choices=("scanned", "digital", "mixed"), default="scanned")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per document")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.pages.split(",") if n.strip()]
    runs = []
    with tempfile.TemporaryDirectory(prefix="docintel-memory-") as name:
        for pages in counts:
            runs.append(run_one(pages, args.kind, args.workers, Path(name), args.timeout))
            log(f"{pages} pages: {runs[-1]}")
    print(report(runs, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
