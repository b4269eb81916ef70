"""How long docintel takes to recover from worker and infrastructure faults, and what it loses.

Real ``docintel worker`` processes on the local PostgreSQL and Redis, with the
default clocks (``DOCINTEL_LEASE_S``, ``DOCINTEL_SWEEP_INTERVAL_S``) unless
overridden in the environment. Each scenario submits the same small batch of
documents (born-digital and scanned pages), injects one fault while a worker
holds a page, and measures the seconds from the fault to every document
finished. Then it checks every page: done, one row of lines per line of
text (no duplicates), and lines of pages finished before the fault never
rewritten.

Scenarios:
  kill        SIGKILL one of two workers (its whole process group) mid-page
  kill-flush  the same, and FLUSHDB the broker at the same moment
  pause       SIGSTOP one of two workers mid-page for 60 s, then SIGCONT it
  cut         terminate every database connection of the one worker mid-page
  broker-down submit while the broker is unreachable; then start one worker

    python -m benchmarks.recovery_bench                 # every scenario
    python -m benchmarks.recovery_bench --only kill,pause
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks.pipeline_bench import (
    REPO,
    db_upgrade,
    docintel_env,
    log,
    pg_database,
    redis_database,
)

SCENARIOS = ("kill", "kill-flush", "pause", "cut", "broker-down")
PAUSE_S = 60.0


@dataclass
class Outcome:
    scenario: str
    docs_done: int
    docs: int
    pages_done: int
    pages: int
    extra_lines: int
    rewritten: int
    stale_dropped: int
    recover_s: float | None


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "docintel", "worker", "--queues=cpu", "--concurrency=1"],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while b"ready." not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)

    def pids(self) -> set[str]:
        main = psutil.Process(self.proc.pid)
        return {str(p.pid) for p in [main, *main.children(recursive=True)]}

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def stale_drops(self) -> int:
        return self.log_path.read_text(errors="replace").count("dropped a stale result")


def make_documents(folder: Path) -> dict[Path, list[str]]:
    from tests.fixtures import documents as fx

    tag = uuid.uuid4().hex[:6]
    docs: dict[Path, list[str]] = {}
    for n in range(2):
        texts = [f"Digital {tag} document {n} page {k}\nsecond line" for k in range(1, 5)]
        docs[fx.make_text_pdf(folder / f"digital-{n}.pdf", texts)] = texts
    scans = [f"Scanned {tag} page {k}\nwith a second line of words" for k in range(1, 4)]
    docs[fx.make_scanned_pdf(folder / "scan.pdf", scans, dpi=100)] = scans
    return docs


@contextlib.contextmanager
def services() -> Iterator[tuple[str, str]]:
    with pg_database() as db, redis_database() as broker:
        yield db, broker


def run_scenario(name: str, work: Path) -> Outcome:
    from sqlalchemy import create_engine, text

    folder = work / name
    folder.mkdir(parents=True)
    with services() as (db, broker):
        env = docintel_env(
            folder / "data",
            database_url=db,
            broker_url=broker,
            storage_url=(folder / "blobs").resolve().as_uri(),
            dpi=150,
        )
        db_upgrade(env)
        settings = _point_at(env)  # this process submits and watches, like the CLI

        docs = make_documents(folder)
        workers: list[Worker] = []

        def start(n: int) -> None:
            for _ in range(n):
                worker = Worker(env, folder / f"worker-{len(workers) + 1}.log")
                workers.append(worker)
            for worker in workers:
                worker.wait_ready()

        try:
            if name == "broker-down":
                return _broker_down(name, env, docs, start, workers)
            start(1 if name == "cut" else 2)
            victim = workers[0]
            ids = [_submit(settings, path) for path in docs]
            _wait_until_holding(settings, victim)
            before = _finished_lines(settings, ids)
            fault_at = time.monotonic()
            if name in ("kill", "kill-flush"):
                victim.signal(signal.SIGKILL)
                if name == "kill-flush":
                    import redis

                    redis.Redis.from_url(broker).flushdb()
            elif name == "pause":
                victim.signal(signal.SIGSTOP)
            elif name == "cut":
                victim.signal(signal.SIGSTOP)
                admin = create_engine(db, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                admin.dispose()
                victim.signal(signal.SIGCONT)
            recover = _wait_done(settings, ids, timeout_s=300)
            if name == "pause":
                # Let the paused worker wake up after the others finished its page.
                time.sleep(max(0.0, PAUSE_S - (time.monotonic() - fault_at)))
                victim.signal(signal.SIGCONT)
                time.sleep(5)
            recover_s = None if recover is None else recover - fault_at
            return _outcome(name, settings, ids, docs, before, workers, recover_s)
        finally:
            for worker in workers:
                worker.stop()


def _broker_down(
    name: str,
    env: dict[str, str],
    docs: dict[Path, list[str]],
    start: Callable[[int], None],
    workers: list[Worker],
) -> Outcome:
    from docintel.service import QueueUnavailable, submit

    dead = _point_at({**env, "DOCINTEL_BROKER_URL": "redis://127.0.0.1:1/0"})
    ids = []
    for path in docs:
        try:
            submit(dead, path)
        except QueueUnavailable as error:
            ids.append(uuid.UUID(str(error).split("document ", 1)[1].split(" ", 1)[0]))
    assert len(ids) == len(docs), "the broker was expected to be unreachable"
    settings = _point_at(env)
    back_at = time.monotonic()
    start(1)  # nothing is re-submitted: the worker's sweep sends what the outbox kept
    recover = _wait_done(settings, ids, timeout_s=300)
    recover_s = None if recover is None else recover - back_at
    return _outcome(name, settings, ids, docs, {}, workers, recover_s)


def _point_at(env: dict[str, str]) -> Any:
    """Settings, database engines and the Celery app of this process, for ``env``."""
    from tests.runtime import reset_process_state

    os.environ.update(env)
    return reset_process_state()


def _submit(settings: object, path: Path) -> uuid.UUID:
    from docintel.service import submit
    from docintel.settings import Settings

    assert isinstance(settings, Settings)
    return submit(settings, path).document_id


def _wait_until_holding(settings: object, worker: Worker, timeout_s: float = 120) -> None:
    from sqlalchemy import select

    from docintel.db import session_scope
    from docintel.models import Page
    from docintel.settings import Settings

    assert isinstance(settings, Settings)
    pids = worker.pids()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as session:
            holders = session.scalars(
                select(Page.claimed_by).where(Page.claim_token.is_not(None))
            ).all()
        if any(h and h.rsplit(":", 1)[-1] in pids for h in holders):
            return
        time.sleep(0.02)
    raise TimeoutError("the worker never held a page")


def _wait_done(settings: object, ids: Sequence[uuid.UUID], timeout_s: float) -> float | None:
    from docintel.service import progress
    from docintel.settings import Settings

    assert isinstance(settings, Settings)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(p.terminal for p in progress(settings, ids)):
            return time.monotonic()
        time.sleep(0.25)
    return None


def _finished_lines(settings: object, ids: Sequence[uuid.UUID]) -> dict[int, list[int]]:
    from sqlalchemy import select

    from docintel.db import session_scope
    from docintel.models import Line, Page, PageStatus
    from docintel.settings import Settings

    assert isinstance(settings, Settings)
    with session_scope(settings.database_url) as session:
        done = session.scalars(
            select(Page.id).where(Page.document_id.in_(ids), Page.status == PageStatus.DONE)
        ).all()
        return {
            page_id: list(
                session.scalars(select(Line.id).where(Line.page_id == page_id).order_by(Line.id))
            )
            for page_id in done
        }


def _outcome(
    name: str,
    settings: object,
    ids: Sequence[uuid.UUID],
    docs: dict[Path, list[str]],
    before: dict[int, list[int]],
    workers: Sequence[Worker],
    recover_s: float | None,
) -> Outcome:
    from sqlalchemy import func, select

    from docintel.db import session_scope
    from docintel.models import Document, Line, Page, PageStatus
    from docintel.settings import Settings

    assert isinstance(settings, Settings)
    after = _finished_lines(settings, ids)
    with session_scope(settings.database_url) as session:
        docs_done = session.scalar(
            select(func.count()).where(Document.id.in_(ids), Document.status == "done")
        )
        pages = session.scalars(select(Page).where(Page.document_id.in_(ids))).all()
        extra = 0
        for page in pages:
            lines = session.scalar(select(func.count()).where(Line.page_id == page.id)) or 0
            extra += max(0, lines - len((page.text or "").splitlines()))
    return Outcome(
        scenario=name,
        docs_done=int(docs_done or 0),
        docs=len(ids),
        pages_done=sum(p.status == PageStatus.DONE for p in pages),
        pages=sum(len(texts) for texts in docs.values()),
        extra_lines=extra,
        rewritten=sum(after.get(page_id) != lines for page_id, lines in before.items()),
        stale_dropped=sum(w.stale_drops() for w in workers),
        recover_s=recover_s,
    )


def report(outcomes: Sequence[Outcome]) -> str:
    from docintel.settings import get_settings

    settings = get_settings()
    rows = [
        f"Clocks: lease {settings.lease_s} s, sweep every {settings.sweep_interval_s} s.",
        "",
        "| scenario | documents done | pages done | duplicated lines | pages rewritten "
        "| stale results dropped | seconds to recover |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        seconds = "not recovered" if o.recover_s is None else f"{o.recover_s:.1f}"
        rows.append(
            f"| {o.scenario} | {o.docs_done}/{o.docs} | {o.pages_done}/{o.pages} "
            f"| {o.extra_lines} | {o.rewritten} | {o.stale_dropped} | {seconds} |"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="docintel-recovery-") as work:
        for name in chosen:
            log(f"scenario {name}")
            try:
                outcomes.append(run_scenario(name, Path(work)))
            except Exception as error:  # one broken scenario must not lose the others
                log(f"scenario {name} failed: {type(error).__name__}: {error}")
                outcomes.append(Outcome(name, 0, 0, 0, 0, 0, 0, 0, None))
    print(report(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
