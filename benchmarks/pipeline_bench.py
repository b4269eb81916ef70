"""Throughput, worker memory and OCR quality of the pipeline on the development corpus.

Run from the repository root::

    python -m benchmarks.pipeline_bench                       # everything, both modes
    python -m benchmarks.pipeline_bench --quick --modes embedded

Documents are grouped by the ``kind`` column of ``MANIFEST.tsv`` (born-digital
pdf, scanned pdf, image, malformed). For each mode and kind it reports pages/s
and peak resident memory, then the character error rate of docintel against
RapidOCR called directly on the same page images, then the status and error
code of every malformed input. Markdown tables go to stdout, progress to stderr.

Modes:

``embedded``     one child process with a fresh environment (SQLite and blobs in a
                 temporary data dir, eager queue); documents are processed one after
                 another inside ``docintel.service.submit``.
``distributed``  a throwaway PostgreSQL database (created and dropped here), a leased
                 Redis database number (flushed before and after), ``--workers``
                 ``docintel worker --queues=cpu --concurrency=1`` processes; a client
                 child submits every document of a kind at once and waits for all of them.

Warm-up is excluded from every timing: before measuring, a few generated documents
(a born-digital PDF, a scanned PDF, PNG scans) go through the same pipeline so that
imports, the RapidOCR models and poppler are loaded. In distributed mode warm-up
rounds repeat until every worker's pool process has onnxruntime mapped.

Memory is sampled with psutil every 0.2 s over each watched process tree (the
process and all its descendants, including poppler children): "largest" is the
biggest single process, "tree" the sum over the tree, both as maxima over the
samples taken while that kind was running.

The helpers here (``TreeSampler``, ``pg_database``, ``redis_database``,
``WorkerPool``) are reused by ``benchmarks.memory_bench``; importing this module
does not import docintel, so the caller can set ``DOCINTEL_*`` first.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psutil

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

KINDS = ("born-digital pdf", "scanned pdf", "image", "malformed")
PG_ADMIN_URL = os.environ.get(
    "DOCINTEL_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DOCINTEL_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# The lease key the test suite uses (tests/services.py): honouring it keeps a benchmark
# and a concurrent test run off each other's Redis database.
REDIS_LEASE_KEY = "docintel-test-lease"
MIB = 1024 * 1024
# docintel CER may exceed the engine's by this much and still count as "not worse".
CER_TOLERANCE = 0.005

# What each malformed corpus file should produce, from the corpus README and manifest
# notes: "done" or "failed/<code>[|<code>]".
EXPECTED_MALFORMED: dict[str, str] = {
    "camelot/expected_df/health_protected.pdf": "failed/encrypted",
    "tabula_java/edge/encrypted.pdf": "failed/encrypted",
    "tabula_java/edge/jpeg2000.pdf": "done",
    "docling/edge/corrupted.pdf": "failed/corrupt|unsupported_type",
    "docling/edge/empty_page.pdf": "done",
    "docling/edge/2206.01062_pg3_password.pdf": "failed/encrypted",
    "ocrmypdf/edge/invalid.pdf": "failed/corrupt",
    "ocrmypdf/edge/encrypted_algo4.pdf": "done",
    "pypdf/edge/r4-aes-user-password.pdf": "failed/encrypted",
    "generated/zero_pages.pdf": "failed/zero_pages",
}


# Manifest rows whose ground truth is not the text of the file; kept in the table,
# left out of the means.
WRONG_GROUND_TRUTH: dict[str, str] = {
    "pytesseract/test_la.png": "the image reads 'This is test message', not the phototest "
    "page its manifest row names",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- corpus ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusDoc:
    path: Path
    local_path: str
    kind: str
    ground_truth: str  # "text", "table" or "none"
    gt_paths: tuple[Path, ...]
    notes: str

    @property
    def text_gt(self) -> Path | None:
        if self.ground_truth != "text":
            return None
        for path in self.gt_paths:
            if path.name.endswith((".gt.md", ".gt.txt", ".approx_gt.txt")):
                return path
        return None


def load_manifest(corpus: Path) -> list[CorpusDoc]:
    docs = []
    with (corpus / "MANIFEST.tsv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            gts = tuple(corpus / p for p in (row["ground_truth_path"] or "").split(";") if p)
            docs.append(
                CorpusDoc(
                    path=corpus / row["local_path"],
                    local_path=row["local_path"],
                    kind=row["kind"],
                    ground_truth=row["has_ground_truth"] or "none",
                    gt_paths=gts,
                    notes=row.get("notes") or "",
                )
            )
    return docs


def select_docs(docs: Sequence[CorpusDoc], limit: int | None) -> dict[str, list[CorpusDoc]]:
    """Documents per kind, in manifest order; with ``limit``, text-ground-truth ones first."""
    groups: dict[str, list[CorpusDoc]] = {kind: [] for kind in KINDS}
    for doc in docs:
        if doc.kind not in groups:
            log(f"skipping {doc.local_path}: unknown kind {doc.kind!r}")
            continue
        if not doc.path.is_file():
            log(f"skipping {doc.local_path}: missing")
            continue
        groups[doc.kind].append(doc)
    if limit is not None:
        for kind, members in groups.items():
            ranked = sorted(members, key=lambda d: d.text_gt is None)
            groups[kind] = ranked[:limit]
    return groups


# -- memory sampling --------------------------------------------------------------------


class Sample(NamedTuple):
    t: float  # time.time()
    label: str
    largest: int  # bytes, biggest single process in the tree
    tree: int  # bytes, sum over the tree
    processes: int


@dataclass(frozen=True)
class Peak:
    largest: int = 0
    tree: int = 0

    def mib(self) -> tuple[str, str]:
        if not self.tree:
            return ("-", "-")
        return (f"{self.largest / MIB:.0f}", f"{self.tree / MIB:.0f}")


def tree_rss(proc: psutil.Process) -> tuple[int, int, int]:
    """(largest, sum, count) of the RSS over ``proc`` and all its descendants."""
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return (0, 0, 0)
    sizes = []
    for member in members:
        with contextlib.suppress(psutil.Error):
            sizes.append(member.memory_info().rss)
    return (max(sizes, default=0), sum(sizes), len(sizes))


class TreeSampler:
    """Samples the RSS of labelled process trees every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list[Sample] = []
        self._roots: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def watch(self, label: str, pid: int) -> None:
        with self._lock:
            self._roots[label] = psutil.Process(pid)

    def unwatch(self, label: str) -> None:
        with self._lock:
            self._roots.pop(label, None)

    def sample_once(self) -> list[Sample]:
        with self._lock:
            roots = list(self._roots.items())
        now = time.time()
        taken = [Sample(now, label, *tree_rss(proc)) for label, proc in roots]
        with self._lock:
            self.samples.extend(s for s in taken if s.processes)
        return taken

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)

    def peak(
        self,
        labels: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Peak:
        wanted = None if labels is None else set(labels)
        with self._lock:
            chosen = [
                s
                for s in self.samples
                if (wanted is None or s.label in wanted)
                and (since is None or s.t >= since)
                and (until is None or s.t <= until)
            ]
        return Peak(
            largest=max((s.largest for s in chosen), default=0),
            tree=max((s.tree for s in chosen), default=0),
        )


def has_onnxruntime(pid: int) -> bool:
    """True if the process has onnxruntime's shared library mapped (RapidOCR loaded)."""
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text(errors="replace")
    except OSError:
        return False


# -- services -------------------------------------------------------------------------


@contextlib.contextmanager
def pg_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database ``docintel_bench_<random>``, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"docintel_bench_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        log(f"created database {name}")
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            log(f"dropped database {name}")
    finally:
        admin.dispose()


@contextlib.contextmanager
def redis_database(preferred: int = 14, base_url: str = REDIS_URL) -> Iterator[str]:
    """Lease a Redis database number nobody else holds (``preferred`` first); flush it
    before and after. Uses the same lease key as the test suite."""
    import redis

    base = base_url.rstrip("/")
    for number in [preferred, *(n for n in range(15, 0, -1) if n != preferred)]:
        client = redis.Redis.from_url(f"{base}/{number}")
        try:
            if not client.set(REDIS_LEASE_KEY, "bench", nx=True, ex=3600):
                continue
            client.flushdb()
            client.set(REDIS_LEASE_KEY, "bench", ex=3600)
            log(f"leased redis database {number}")
            try:
                yield f"{base}/{number}"
            finally:
                client.flushdb()
            return
        finally:
            client.close()
    raise RuntimeError("no free Redis database number (1-15)")


def docintel_env(
    data_dir: Path,
    *,
    database_url: str = "",
    broker_url: str = "",
    storage_url: str = "",
    dpi: int | None = None,
    ocr_threads: int | None = None,
) -> dict[str, str]:
    """This process's environment without any DOCINTEL_* variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    env["DOCINTEL_DATA_DIR"] = str(data_dir)
    if database_url:
        env["DOCINTEL_DATABASE_URL"] = database_url
    if broker_url:
        env["DOCINTEL_BROKER_URL"] = broker_url
    if storage_url:
        env["DOCINTEL_STORAGE_URL"] = storage_url
    if dpi is not None:
        env["DOCINTEL_RENDER_DPI"] = str(dpi)
    if ocr_threads is not None:
        env["DOCINTEL_OCR_THREADS"] = str(ocr_threads)
    return env


def threads_per_worker(workers: int, concurrency: int) -> int:
    """The CPUs shared among every pool process of every worker on this machine, as an
    operator running several workers on one host would set DOCINTEL_OCR_THREADS (a
    worker alone only divides among its own pool)."""
    return max(1, len(os.sched_getaffinity(0)) // (workers * concurrency))


def db_upgrade(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "docintel", "db", "upgrade"],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


class WorkerPool:
    """``count`` real ``docintel worker`` processes, each in its own process group."""

    def __init__(self, env: dict[str, str], log_dir: Path, count: int, concurrency: int) -> None:
        self.env, self.count, self.concurrency = env, count, concurrency
        self.log_paths = [log_dir / f"worker-{n + 1}.log" for n in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    @property
    def labels(self) -> list[str]:
        return [f"worker-{n + 1}" for n in range(len(self.procs))]

    def start(self, timeout: float = 90) -> None:
        for path in self.log_paths:
            handle = path.open("wb")
            self._logs.append(handle)
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "docintel",
                        "worker",
                        "--queues=cpu",
                        f"--concurrency={self.concurrency}",
                        "--loglevel=info",
                    ],
                    env=self.env,
                    cwd=REPO,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        for proc, path in zip(self.procs, self.log_paths, strict=True):
            while b"ready." not in path.read_bytes():
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited early:\n{self.tail(path)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker not ready:\n{self.tail(path)}")
                time.sleep(0.2)

    def pool_pids(self) -> list[list[int]]:
        """The pool (child) processes of each worker."""
        out = []
        for proc in self.procs:
            try:
                out.append([c.pid for c in psutil.Process(proc.pid).children()])
            except psutil.Error:
                out.append([])
        return out

    def all_loaded_ocr(self) -> bool:
        return all(pids and all(has_onnxruntime(pid) for pid in pids) for pids in self.pool_pids())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for handle in self._logs:
            handle.close()

    def errors(self) -> list[str]:
        """Lines of the worker logs that look like errors (for the report)."""
        found = []
        for path in self.log_paths:
            for line in path.read_text(errors="replace").splitlines():
                if any(word in line for word in ("ERROR", "Traceback", "CRITICAL")):
                    found.append(f"{path.name}: {line.strip()[:200]}")
        return found

    @staticmethod
    def tail(path: Path, chars: int = 4000) -> str:
        return path.read_text(errors="replace")[-chars:]


# -- generated warm-up documents ------------------------------------------------------


def make_warmup_docs(folder: Path, tag: str) -> list[Path]:
    """A born-digital PDF, a scanned PDF and two PNG scans, unique to ``tag`` (the
    pipeline deduplicates by content)."""
    from tests.fixtures import documents as fx

    folder.mkdir(parents=True, exist_ok=True)
    lines = f"Warm-up document {tag}\nThe quick brown fox jumps over the lazy dog"
    paths = [
        fx.make_text_pdf(folder / f"warm-{tag}-digital.pdf", [lines]),
        fx.make_scanned_pdf(folder / f"warm-{tag}-scan.pdf", [lines], dpi=100),
    ]
    for n in range(2):
        image = fx.render_text_image(f"{lines}\nimage {n}", (900, 300), dpi=150)
        path = folder / f"warm-{tag}-{n}.png"
        image.save(path)
        paths.append(path)
    return paths


# -- the client child: submits, waits, reports ------------------------------------------


def client_main(plan_path: Path, result_path: Path) -> int:
    """Runs in a child process whose environment selects the mode."""
    from docintel.db import session_scope
    from docintel.output import document_json, load_document
    from docintel.service import submit, wait
    from docintel.settings import get_settings

    plan = json.loads(plan_path.read_text())
    settings = get_settings()
    embedded = settings.embedded
    timeout_s = float(plan["timeout_s"])

    def run_batch(files: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"file": f, "id": None, "error": None} for f in files]
        if embedded:  # the work happens inside submit(): one document after another
            for row in rows:
                started = time.perf_counter()
                try:
                    row["id"] = submit(settings, Path(row["file"])).document_id
                    wait(settings, [row["id"]], timeout_s=timeout_s, poll_s=0.02)
                except Exception as error:
                    row["error"] = f"{type(error).__name__}: {error}"[:300]
                row["seconds"] = time.perf_counter() - started
            return rows
        for row in rows:
            try:
                row["id"] = submit(settings, Path(row["file"])).document_id
            except Exception as error:
                row["error"] = f"{type(error).__name__}: {error}"[:300]
        ids = [row["id"] for row in rows if row["id"] is not None]
        if ids:
            wait(settings, ids, timeout_s=timeout_s, poll_s=0.1)
        return rows

    result: dict[str, Any] = {"mode": "embedded" if embedded else "distributed", "groups": []}
    for group in plan["groups"]:
        t0 = time.time()
        rows = run_batch(group["files"])
        t1 = time.time()
        with session_scope(settings.database_url) as session:
            for row in rows:
                doc = load_document(session, row["id"]) if row["id"] is not None else None
                row["id"] = str(row["id"]) if row["id"] is not None else None
                if doc is None:
                    continue
                data = document_json(doc)
                row["document"] = data["document"]
                row["pages"] = [
                    {k: v for k, v in page.items() if k not in ("lines", "markdown")}
                    | {"image_key": stored.image_key}
                    for page, stored in zip(data["pages"], doc.pages, strict=True)
                ]
        result["groups"].append({"name": group["name"], "t0": t0, "t1": t1, "rows": rows})
        log(f"{result['mode']}: {group['name']}: {len(rows)} documents in {t1 - t0:.1f} s")
    result_path.write_text(json.dumps(result))
    return 0


def run_client(
    env: dict[str, str], groups: list[tuple[str, list[Path]]], work: Path, timeout_s: float
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start the client child; returns it and the path its result will be written to."""
    tag = secrets.token_hex(4)
    plan = work / f"plan-{tag}.json"
    result = work / f"result-{tag}.json"
    plan.write_text(
        json.dumps(
            {
                "timeout_s": timeout_s,
                "groups": [{"name": n, "files": [str(p) for p in fs]} for n, fs in groups],
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.pipeline_bench", "--client", str(plan), str(result)],
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    return proc, result


def finish_client(proc: subprocess.Popen[bytes], result: Path, timeout_s: float) -> dict[str, Any]:
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise RuntimeError(f"benchmark client did not finish in {timeout_s:.0f} s") from None
    if code != 0 or not result.is_file():
        raise RuntimeError(f"benchmark client failed with exit code {code}")
    data: dict[str, Any] = json.loads(result.read_text())
    return data


# -- modes ------------------------------------------------------------------------------


@dataclass
class KindRun:
    kind: str
    seconds: float
    rows: list[dict[str, Any]]
    peak: Peak

    @property
    def pages(self) -> int:
        return sum(int((r.get("document") or {}).get("page_count") or 0) for r in self.rows)


@dataclass
class ModeRun:
    mode: str
    setup: str
    kinds: dict[str, KindRun] = field(default_factory=dict)
    overall_peak: Peak = field(default_factory=Peak)
    warmup_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _kind_runs(data: dict[str, Any], sampler: TreeSampler, labels: list[str]) -> dict[str, KindRun]:
    return {
        g["name"]: KindRun(
            kind=g["name"],
            seconds=g["t1"] - g["t0"],
            rows=g["rows"],
            peak=sampler.peak(labels, g["t0"], g["t1"] + sampler.interval),
        )
        for g in data["groups"]
    }


def run_embedded(
    groups: list[tuple[str, list[Path]]],
    work: Path,
    dpi: int | None,
    sampler: TreeSampler,
    timeout_s: float,
) -> ModeRun:
    root = work / "embedded"
    env = docintel_env(root / "data", dpi=dpi)
    db_upgrade(env)
    warm = make_warmup_docs(root / "warmup", "embedded-" + secrets.token_hex(3))
    started = time.time()
    proc, result = run_client(env, [("warm-up", warm), *groups], root, timeout_s)
    sampler.watch("embedded", proc.pid)
    try:
        data = finish_client(proc, result, timeout_s * (len(groups) + 1))
    finally:
        sampler.unwatch("embedded")
    run = ModeRun("embedded", "1 process, SQLite, eager queue, documents one after another")
    kinds = _kind_runs(data, sampler, ["embedded"])
    run.warmup_s = kinds.pop("warm-up").seconds
    run.kinds = kinds
    run.overall_peak = sampler.peak(["embedded"], started)
    return run


def run_distributed(
    groups: list[tuple[str, list[Path]]],
    work: Path,
    dpi: int | None,
    sampler: TreeSampler,
    timeout_s: float,
    workers: int,
    concurrency: int,
    redis_db: int,
) -> ModeRun:
    root = work / "distributed"
    root.mkdir(parents=True, exist_ok=True)
    threads = threads_per_worker(workers, concurrency)
    run = ModeRun(
        "distributed",
        f"{workers} worker process(es) x --concurrency={concurrency}, "
        f"DOCINTEL_OCR_THREADS={threads}, Postgres + Redis, "
        "all documents of a kind submitted at once",
    )
    with pg_database() as db_url, redis_database(redis_db) as broker:
        env = docintel_env(
            root / "data",
            database_url=db_url,
            broker_url=broker,
            storage_url=(root / "blobs").resolve().as_uri(),
            dpi=dpi,
            ocr_threads=threads,
        )
        db_upgrade(env)
        pool = WorkerPool(env, root, workers, concurrency)
        try:
            pool.start()
            for label, proc in zip(pool.labels, pool.procs, strict=True):
                sampler.watch(label, proc.pid)
            started = time.time()
            for round_ in range(1, 6):
                warm = make_warmup_docs(root / "warmup", f"dist-{round_}-{secrets.token_hex(3)}")
                proc, result = run_client(env, [("warm-up", warm)], root, timeout_s)
                finish_client(proc, result, timeout_s + 30)
                if pool.all_loaded_ocr():
                    break
            else:
                run.notes.append("warm-up: not every worker had loaded RapidOCR after 5 rounds")
            run.warmup_s = time.time() - started
            proc, result = run_client(env, groups, root, timeout_s)
            data = finish_client(proc, result, timeout_s * len(groups) + 60)
            run.kinds = _kind_runs(data, sampler, pool.labels)
            # Peaks per worker tree; the report shows the larger worker.
            run.overall_peak = max(
                (sampler.peak([label], started) for label in pool.labels),
                key=lambda p: p.tree,
                default=Peak(),
            )
            # Per kind, the larger of the two workers' peaks while that kind ran.
            for kind_run in run.kinds.values():
                window = next(g for g in data["groups"] if g["name"] == kind_run.kind)
                kind_run.peak = max(
                    (
                        sampler.peak([label], window["t0"], window["t1"] + sampler.interval)
                        for label in pool.labels
                    ),
                    key=lambda p: p.tree,
                    default=Peak(),
                )
            run.notes.extend(pool.errors()[:20])
        finally:
            for label in pool.labels:
                sampler.unwatch(label)
            pool.stop()
    return run


# -- OCR quality ------------------------------------------------------------------------


def reference_text(path: Path) -> str:
    """Ground truth as plain text: Markdown headings and list markers dropped."""
    text = path.read_text(encoding="utf-8")
    if path.name.endswith(".md"):
        lines = [line.lstrip("#").lstrip() for line in text.splitlines()]
        lines = [line[2:] if line.startswith(("- ", "* ")) else line for line in lines]
        text = "\n".join(lines)
    return text


def page_cers(texts: Sequence[str], reference: str) -> float:
    """CER of a document. A multi-page document whose ground truth is one page (the same
    page turned four ways, say) is scored page by page and averaged."""
    from tests.text_metrics import cer

    if len(texts) <= 1:
        return cer("\n".join(texts), reference)
    return sum(cer(text, reference) for text in texts) / len(texts)


class EngineDirect:
    """RapidOCR with its own defaults, called on docintel's stored page images: the
    baseline docintel's OCR path must not fall behind."""

    def __init__(self) -> None:
        from rapidocr import RapidOCR

        self._ocr = RapidOCR(params={"Global.log_level": "warning"})

    def read(self, image: Any) -> str:
        import numpy as np

        result = self._ocr(np.asarray(image.convert("RGB")))
        return "\n".join(getattr(result, "txts", None) or ())


@dataclass
class CerRow:
    file: str
    pages: int
    docintel: dict[str, float | None]  # by mode
    engine: float | None


def measure_cer(
    docs: Sequence[CorpusDoc], runs: Sequence[ModeRun], stores: dict[str, str]
) -> list[CerRow]:
    """docintel's page text per mode, and RapidOCR direct on the images the first mode
    stored (every mode renders the same pages at the same DPI)."""
    import io

    from PIL import Image

    from docintel.storage import open_store

    rows_by_mode = {
        run.mode: {row["file"]: row for kind in run.kinds.values() for row in kind.rows}
        for run in runs
    }
    engine = EngineDirect()
    table = []
    for doc in docs:
        gt = doc.text_gt
        if gt is None:
            continue
        reference = reference_text(gt)
        result = CerRow(doc.local_path, 0, {}, None)
        image_keys: list[str] | None = None
        image_store = None
        for run in runs:
            row = rows_by_mode[run.mode].get(str(doc.path))
            pages = (row or {}).get("pages") or []
            if not pages:
                result.docintel[run.mode] = None
                continue
            result.pages = len(pages)
            result.docintel[run.mode] = page_cers([p.get("text") or "" for p in pages], reference)
            if image_keys is None and all(p.get("image_key") for p in pages):
                image_keys = [p["image_key"] for p in pages]
                image_store = open_store(stores[run.mode])
        if image_keys and image_store is not None:
            texts = []
            for key in image_keys:
                with Image.open(io.BytesIO(image_store.get_bytes(key))) as image:
                    texts.append(engine.read(image))
            result.engine = page_cers(texts, reference)
        table.append(result)
        log(f"CER {doc.local_path}: {result.docintel} engine={result.engine}")
    return table


# -- report -----------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def throughput_table(runs: Sequence[ModeRun]) -> str:
    rows = []
    for run in runs:
        for kind in KINDS:
            kind_run = run.kinds.get(kind)
            if kind_run is None or not kind_run.rows:
                continue
            pages = kind_run.pages
            rate = f"{pages / kind_run.seconds:.2f}" if pages and kind_run.seconds else "-"
            largest, tree = kind_run.peak.mib()
            rows.append(
                [
                    run.mode,
                    kind,
                    len(kind_run.rows),
                    pages,
                    f"{kind_run.seconds:.1f}",
                    rate,
                    largest,
                    tree,
                ]
            )
    header = ["mode", "kind", "docs", "pages", "seconds", "pages/s", "peak RSS MiB", "tree MiB"]
    return markdown_table(header, rows)


def cer_table(rows: Sequence[CerRow], modes: Sequence[str]) -> str:
    header = ["document", "pages", *(f"docintel {m}" for m in modes), "RapidOCR direct", "verdict"]
    body = []
    for row in rows:
        ours = [row.docintel.get(mode) for mode in modes]
        known = [v for v in ours if v is not None]
        if not known or row.engine is None:
            verdict = "-"
        elif max(known) <= row.engine + CER_TOLERANCE:
            verdict = "not worse"
        else:
            verdict = "WORSE"
        if row.file in WRONG_GROUND_TRUTH:
            verdict += " (wrong ground truth, not in the mean)"
        body.append([row.file, row.pages, *(_pct(v) for v in ours), _pct(row.engine), verdict])
    rows = [r for r in rows if r.file not in WRONG_GROUND_TRUTH]
    means = []
    for mode in modes:
        values = [r.docintel.get(mode) for r in rows]
        known = [v for v in values if v is not None]
        means.append(_pct(sum(known) / len(known)) if known else "-")
    engine_values = [r.engine for r in rows if r.engine is not None]
    engine_mean = _pct(sum(engine_values) / len(engine_values)) if engine_values else "-"
    body.append(["**mean**", sum(r.pages for r in rows), *means, engine_mean, ""])
    return markdown_table(header, body)


def _outcome(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row.get("error"):
        return f"client error: {row['error']}"
    doc = row.get("document") or {}
    error = doc.get("error") or {}
    status = doc.get("status") or "?"
    return f"{status}/{error['code']}" if error.get("code") and status != "done" else status


def _matches(outcome: str, expected: str) -> bool:
    if "/" not in expected:
        return outcome == expected
    status, codes = expected.split("/", 1)
    return outcome.split("/", 1)[0] == status and outcome.split("/", 1)[-1] in codes.split("|")


def malformed_table(docs: Sequence[CorpusDoc], runs: Sequence[ModeRun]) -> str:
    by_mode = {
        run.mode: {row["file"]: row for kind in run.kinds.values() for row in kind.rows}
        for run in runs
    }
    rows = []
    for doc in docs:
        expected = EXPECTED_MALFORMED.get(doc.local_path, "?")
        outcomes = [_outcome(by_mode[run.mode].get(str(doc.path))) for run in runs]
        ok = all(_matches(o, expected) for o in outcomes)
        rows.append([doc.local_path, expected, *outcomes, "yes" if ok else "NO"])
    return markdown_table(["file", "expected", *(r.mode for r in runs), "as expected"], rows)


# -- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--modes", default="embedded,distributed")
    parser.add_argument("--quick", action="store_true", help="at most 2 documents per kind")
    parser.add_argument("--limit", type=int, help="at most N documents per kind")
    parser.add_argument("--dpi", type=int, help="render DPI (default: docintel's)")
    parser.add_argument("--workers", type=int, default=2, help="distributed worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool size per worker")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per kind")
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--client", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client_main(*args.client)

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"embedded", "distributed"}
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    limit = 2 if args.quick else args.limit
    corpus_docs = load_manifest(args.corpus)
    groups = select_docs(corpus_docs, limit)
    plan = [(kind, [d.path for d in groups[kind]]) for kind in KINDS if groups[kind]]
    log(", ".join(f"{kind}: {len(groups[kind])}" for kind in KINDS))

    work_ctx: Any = (
        contextlib.nullcontext(str(args.keep))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="docintel-bench-")
    )
    runs: list[ModeRun] = []
    stores: dict[str, str] = {}
    with work_ctx as work_name, TreeSampler() as sampler:
        work = Path(work_name)
        work.mkdir(parents=True, exist_ok=True)
        if "embedded" in modes:
            log("embedded mode")
            runs.append(run_embedded(plan, work, args.dpi, sampler, args.timeout))
            stores["embedded"] = (work / "embedded" / "data" / "blobs").resolve().as_uri()
        if "distributed" in modes:
            log(f"distributed mode, {args.workers} workers")
            runs.append(
                run_distributed(
                    plan,
                    work,
                    args.dpi,
                    sampler,
                    args.timeout,
                    args.workers,
                    args.concurrency,
                    args.redis_db,
                )
            )
            stores["distributed"] = (work / "distributed" / "blobs").resolve().as_uri()
        text_docs = [d for kind in KINDS for d in groups[kind] if d.text_gt is not None]
        cer_rows = measure_cer(sorted(text_docs, key=lambda d: d.local_path), runs, stores)

    print("## Throughput and memory\n")
    for run in runs:
        print(f"- {run.mode}: {run.setup}; warm-up {run.warmup_s:.0f} s (not counted)")
    print(
        "\npeak RSS: the largest single process (embedded: the one process; distributed: "
        "the larger worker); tree: the worker with its pool and poppler children.\n"
    )
    print(throughput_table(runs))
    print("\n## Character error rate on documents with text ground truth\n")
    print(cer_table(cer_rows, [r.mode for r in runs]))
    print(
        f"\n'not worse': docintel's CER is at most RapidOCR's + {100 * CER_TOLERANCE:.1f} "
        "points. ocrmypdf's linn text is approximate ground truth (itself OCR output)."
    )
    for file, why in WRONG_GROUND_TRUTH.items():
        print(f"{file}: {why}.")
    if groups["malformed"]:
        print("\n## Malformed and hostile inputs\n")
        print(malformed_table(groups["malformed"], runs))
    notes = [note for run in runs for note in run.notes]
    if notes:
        print("\n## Worker log lines that look like errors\n")
        for note in notes:
            print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
