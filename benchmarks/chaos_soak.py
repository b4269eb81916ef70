"""Chaos soak: many pages through several workers while a loop SIGKILLs them.

Real ``docintel worker`` processes on the local PostgreSQL and Redis. Every
``--kill-every`` seconds a worker's whole process group is SIGKILLed (every
third time the one that swept last, since no worker is special) and a new one
is started. Afterwards every document must be ``done``, every page processed
exactly once: no page missing, no line row duplicated. Reported: pages
expected / done / lost / duplicated, kills, and how long the pages a killed
worker held waited before another worker finished them (that is the lease,
``DOCINTEL_LEASE_S``, plus a sweep interval, plus the work).

    python -m benchmarks.chaos_soak                       # 1,000 pages, 3 workers
    python -m benchmarks.chaos_soak --pages 200 --scanned-pages 20 --kill-every 3

A short version runs in CI (tests/queue/test_chaos.py).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.pipeline_bench import db_upgrade, docintel_env, log, markdown_table
from benchmarks.recovery_bench import Worker

BORN_DIGITAL_PAGES_PER_DOC = 25
SCANNED_PAGES_PER_DOC = 5


@dataclass(frozen=True)
class SoakPlan:
    pages: int = 1000
    scanned_pages: int = 60  # of ``pages``: these need OCR
    workers: int = 3
    kill_every_s: float = 5.0
    max_kills: int | None = None  # None: until the work is done
    timeout_s: float = 3600.0
    env: dict[str, str] = field(default_factory=dict)  # extra DOCINTEL_* settings


@dataclass
class Kill:
    at: float
    victim: str
    was_sweeper: bool
    held: dict[int, float | None]  # page id -> when it was finished (None: not yet)


@dataclass
class SoakResult:
    documents: int
    documents_done: int
    still_processing: int
    pages_expected: int
    pages_done: int
    pages_lost: int
    lines_duplicated: int
    kills: list[Kill]
    seconds: float

    @property
    def waits(self) -> list[float]:
        return [done - k.at for k in self.kills for done in k.held.values() if done is not None]

    @property
    def unfinished_held(self) -> int:
        return sum(done is None for k in self.kills for done in k.held.values())


def make_corpus(folder: Path, pages: int, scanned_pages: int) -> dict[Path, list[str]]:
    """Born-digital documents of 25 pages and scanned ones of 5, each page unique."""
    from tests.fixtures import documents as fx

    folder.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:6]
    corpus: dict[Path, list[str]] = {}
    digital = pages - scanned_pages
    for n in range(0, digital, BORN_DIGITAL_PAGES_PER_DOC):
        count = min(BORN_DIGITAL_PAGES_PER_DOC, digital - n)
        texts = [
            f"Soak {tag} digital {n // BORN_DIGITAL_PAGES_PER_DOC} page {k}\nline two of {k}"
            for k in range(1, count + 1)
        ]
        corpus[fx.make_text_pdf(folder / f"digital-{n}.pdf", texts)] = texts
    for n in range(0, scanned_pages, SCANNED_PAGES_PER_DOC):
        count = min(SCANNED_PAGES_PER_DOC, scanned_pages - n)
        texts = [f"Scanned {tag} {n} page {k}\nsecond line {k}" for k in range(1, count + 1)]
        corpus[fx.make_scanned_pdf(folder / f"scanned-{n}.pdf", texts, dpi=100)] = texts
    return corpus


def run_soak(plan: SoakPlan, folder: Path, database_url: str, broker_url: str) -> SoakResult:
    """The soak on the given (empty) database and broker; this process submits and watches."""
    from tests.runtime import reset_process_state

    env = docintel_env(
        folder / "data",
        database_url=database_url,
        broker_url=broker_url,
        storage_url=(folder / "blobs").resolve().as_uri(),
        dpi=100,
    )
    env.update(plan.env)
    db_upgrade(env)
    os.environ.update(env)
    settings = reset_process_state()
    corpus = make_corpus(folder / "docs", plan.pages, plan.scanned_pages)
    workers: list[Worker] = []

    def start_worker() -> Worker:
        worker = Worker(env, folder / f"worker-{len(workers) + 1}.log")
        workers.append(worker)
        return worker

    from docintel.service import progress, submit

    try:
        for _ in range(plan.workers):
            start_worker()
        for worker in workers:
            worker.wait_ready()
        started = time.monotonic()
        ids = [submit(settings, path).document_id for path in corpus]
        log(f"submitted {len(ids)} documents, {plan.pages} pages")
        kills: list[Kill] = []
        live = list(workers)
        next_kill = time.monotonic() + plan.kill_every_s
        while time.monotonic() - started < plan.timeout_s:
            _note_finished(settings, kills)
            if all(p.terminal for p in progress(settings, ids)):
                break
            if time.monotonic() >= next_kill and (
                plan.max_kills is None or len(kills) < plan.max_kills
            ):
                kills.append(_kill_one(settings, live, sweeper_turn=len(kills) % 3 == 2))
                live.remove(next(w for w in live if w.proc.poll() is not None))
                live.append(start_worker())
                next_kill = time.monotonic() + plan.kill_every_s
            time.sleep(0.25)
        seconds = time.monotonic() - started
        _note_finished(settings, kills)
        return _result(settings, ids, corpus, kills, seconds)
    finally:
        for worker in workers:
            if worker.proc.poll() is None:
                worker.stop()


def _kill_one(settings: Any, live: list[Worker], *, sweeper_turn: bool) -> Kill:
    """SIGKILL one live worker's process group, noting the pages it held at that moment."""
    import signal

    from sqlalchemy import select

    from docintel.db import session_scope
    from docintel.models import ClusterState, Page

    with session_scope(settings.database_url) as session:
        swept_by = session.scalar(select(ClusterState.swept_by).where(ClusterState.id == 1))
        holders = session.execute(
            select(Page.id, Page.claimed_by).where(Page.claim_token.is_not(None))
        ).all()
    holder_pids = {by.rsplit(":", 1)[-1] for _, by in holders if by}
    sweeper = next((w for w in live if swept_by and swept_by.endswith(f":{w.proc.pid}")), None)
    # Otherwise a worker in the middle of work, if any: a kill of an idle replacement
    # that has not taken a page yet tests nothing.
    busy = [w for w in live if w.pids() & holder_pids] or live
    victim = sweeper if sweeper_turn and sweeper is not None else random.choice(busy)
    pids = victim.pids()
    held = {page_id: None for page_id, by in holders if by and by.rsplit(":", 1)[-1] in pids}
    victim.signal(signal.SIGKILL)
    victim.proc.wait(10)
    log(
        f"killed {victim.log_path.stem} ({'the sweeper, ' if victim is sweeper else ''}"
        f"holding {len(held)} pages)"
    )
    return Kill(time.monotonic(), victim.log_path.stem, victim is sweeper, dict(held))


def _note_finished(settings: Any, kills: list[Kill]) -> None:
    from sqlalchemy import select

    from docintel.db import session_scope
    from docintel.models import Page, PageStatus

    waiting = [page_id for k in kills for page_id, done in k.held.items() if done is None]
    if not waiting:
        return
    with session_scope(settings.database_url) as session:
        finished = set(
            session.scalars(
                select(Page.id).where(
                    Page.id.in_(waiting), Page.status.in_((PageStatus.DONE, PageStatus.FAILED))
                )
            )
        )
    now = time.monotonic()
    for kill in kills:
        for page_id in finished & kill.held.keys():
            if kill.held[page_id] is None:
                kill.held[page_id] = now


def _result(
    settings: Any,
    ids: list[uuid.UUID],
    corpus: dict[Path, list[str]],
    kills: list[Kill],
    seconds: float,
) -> SoakResult:
    from sqlalchemy import func, select

    from docintel.db import session_scope
    from docintel.models import Document, DocumentStatus, Line, Page, PageStatus

    with session_scope(settings.database_url) as session:
        statuses = session.scalars(select(Document.status).where(Document.id.in_(ids))).all()
        pages_done = session.scalar(
            select(func.count()).where(Page.document_id.in_(ids), Page.status == PageStatus.DONE)
        )
        # A line written twice (a stage's result applied twice) repeats its text and box.
        per_page = (
            select(
                (
                    func.count()
                    - func.count(func.distinct(Line.text + func.cast(Line.polygon, _text_type())))
                ).label("extra")
            )
            .join(Page, Page.id == Line.page_id)
            .where(Page.document_id.in_(ids))
            .group_by(Line.page_id)
            .subquery()
        )
        duplicated = session.scalar(select(func.coalesce(func.sum(per_page.c.extra), 0)))
    expected = sum(len(texts) for texts in corpus.values())
    return SoakResult(
        documents=len(ids),
        documents_done=sum(s == DocumentStatus.DONE for s in statuses),
        still_processing=sum(s == DocumentStatus.PROCESSING for s in statuses),
        pages_expected=expected,
        pages_done=int(pages_done or 0),
        pages_lost=expected - int(pages_done or 0),
        lines_duplicated=int(duplicated or 0),
        kills=kills,
        seconds=seconds,
    )


def _text_type() -> Any:
    from sqlalchemy import Text

    return Text()


def report(result: SoakResult, plan: SoakPlan) -> str:
    waits = result.waits
    rows = [
        [
            f"{result.documents_done}/{result.documents}",
            result.pages_expected,
            result.pages_done,
            result.pages_lost,
            result.lines_duplicated,
            result.still_processing,
            f"{len(result.kills)} ({sum(k.was_sweeper for k in result.kills)} sweeper)",
            sum(len(k.held) for k in result.kills),
            f"{statistics.median(waits):.1f}" if waits else "-",
            f"{max(waits):.1f}" if waits else "-",
            f"{result.seconds:.0f}",
            f"{result.pages_done / result.seconds:.2f}",
        ]
    ]
    header = [
        "docs done",
        "pages",
        "done",
        "lost",
        "dup lines",
        "processing",
        "kills",
        "held at kill",
        "wait p50 s",
        "wait max s",
        "seconds",
        "pages/s",
    ]
    lease = plan.env.get("DOCINTEL_LEASE_S", "20 (default)")
    return (
        f"{plan.workers} workers, a SIGKILL every {plan.kill_every_s:g} s, lease {lease} s\n\n"
        + markdown_table(header, rows)
    )


def main() -> int:
    from benchmarks.pipeline_bench import pg_database, redis_database

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--scanned-pages", type=int, default=60)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--max-kills", type=int, default=None)
    args = parser.parse_args()
    plan = SoakPlan(
        pages=args.pages,
        scanned_pages=args.scanned_pages,
        workers=args.workers,
        kill_every_s=args.kill_every,
        max_kills=args.max_kills,
        env={
            k: v
            for k, v in os.environ.items()
            if k in ("DOCINTEL_LEASE_S", "DOCINTEL_SWEEP_INTERVAL_S")
        },
    )
    with (
        tempfile.TemporaryDirectory(prefix="docintel-soak-") as tmp,
        pg_database() as db,
        redis_database() as broker,
    ):
        result = run_soak(plan, Path(tmp), db, broker)
    print()
    print(report(result, plan))
    ok = (
        result.documents_done == result.documents
        and result.pages_lost == 0
        and result.lines_duplicated == 0
        and result.unfinished_held == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
