"""Exactly-once pages under pauses, kills, cut connections and lost messages.

Each test reproduces, with real worker processes on the real PostgreSQL and
Redis, a way in which the old claims broke (issue: fenced leases, no
singleton): a paused worker overwriting newer results, a sweep from another
PID namespace freeing live claims, a retry stranded by its own claim, a
message lost when the broker was down, and a killed worker plus a flushed
broker. Each runs on a database of its own, so no other test's leftovers
are swept into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from docintel.db import session_scope
from docintel.models import Document, Line, OutboxMessage, Page, PageStatus
from docintel.service import progress, submit, wait
from docintel.settings import Settings
from tests import services
from tests.fixtures import documents as fx
from tests.runtime import WorkerProcess, apply_env, base_env, running_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker, pytest.mark.slow]

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


@pytest.fixture
def broker() -> Iterator[str]:
    with services.redis_database() as url:
        yield url


def _env(tmp: Path, db: str, broker: str, **extra: str) -> dict[str, str]:
    return {**base_env(tmp, db, broker), **extra}


def _page_rows(settings: Settings, doc_id: uuid.UUID) -> list[Page]:
    with session_scope(settings.database_url) as session:
        return list(
            session.scalars(select(Page).where(Page.document_id == doc_id).order_by(Page.number))
        )


def _line_ids(settings: Settings, page_id: int) -> list[int]:
    with session_scope(settings.database_url) as session:
        return list(
            session.scalars(select(Line.id).where(Line.page_id == page_id).order_by(Line.idx))
        )


def _claimed(settings: Settings, doc_id: uuid.UUID, status: PageStatus) -> bool:
    return any(p.claim_token and p.status == status for p in _page_rows(settings, doc_id))


def test_a_paused_worker_cannot_overwrite_the_worker_that_took_over(
    own_db: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the resumed worker wrote anyway, and the page went back to ``ocr`` under a
    ``done`` document, for good."""
    env = _env(
        tmp_path,
        own_db,
        broker,
        # Long enough that a loaded machine renews in time, short enough for a test.
        DOCINTEL_LEASE_S="4",
        DOCINTEL_SWEEP_INTERVAL_S="1",
        DOCINTEL_OCR_MODE="always",
        DOCINTEL_TEST_STAGE_DELAYS='{"render": 6}',
    )
    settings = apply_env(monkeypatch, env)
    path = fx.make_scanned_pdf(
        tmp_path / "paused.pdf", ["Paused worker page\nand a second line of words"], dpi=100
    )

    with running_worker(env) as first:
        doc_id = submit(settings, path).document_id
        wait_until(lambda: _claimed(settings, doc_id, PageStatus.PENDING), 30, "the first claim")
        first.pause()  # mid-render, holding the lease
        (held,) = _page_rows(settings, doc_id)
        try:
            with running_worker(env) as second:

                def taken_over() -> bool:
                    (page,) = _page_rows(settings, doc_id)
                    return page.claim_token not in (None, held.claim_token)

                # The lease lapsed, the second worker took the page and renders it.
                wait_until(taken_over, 60, "the second worker to take the page over")
                first.resume()  # its render is over: it writes at once, while the page
                # is held by the second worker and the document still processing
                wait_until(
                    lambda: b"dropped a stale result" in first.log_path.read_bytes(), 30, "drop"
                )
                (state,) = wait(settings, [doc_id], timeout_s=90)
                assert state.status == "done", second.log()
        finally:
            first.resume()

    (page,) = _page_rows(settings, doc_id)
    assert (page.status, page.text_source, page.error_code) == (PageStatus.DONE, "ocr", None)
    assert page.claim_token is None and page.attempts == 1  # OCR's own attempt
    lines = _line_ids(settings, page.id)
    assert lines and len(lines) == len((page.text or "").splitlines())
    assert progress(settings, [doc_id])[0].status == "done"


def test_a_sweep_in_another_pid_namespace_leaves_a_live_lease_alone(
    own_db: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: each sweep saw no such pid on this host, freed the live claim, and the
    page was read three times at once, then ended ``done`` with ``error_code=timeout``."""
    env = _env(
        tmp_path,
        own_db,
        broker,
        # A lease a loaded CI machine renews in time; OCR held long enough for three
        # sweeps from fresh Python processes. One attempt only: a lease wrongly freed
        # would fail the page with "timeout" at once.
        DOCINTEL_LEASE_S="5",
        DOCINTEL_SWEEP_INTERVAL_S="1",
        DOCINTEL_MAX_PAGE_ATTEMPTS="1",
        DOCINTEL_TEST_STAGE_DELAYS='{"ocr": 20}',
    )
    settings = apply_env(monkeypatch, env)
    path = fx.make_scanned_pdf(
        tmp_path / "ns.pdf", ["Namespaces do not matter\nand a second line of words"], dpi=100
    )

    with running_worker(env) as worker:
        doc_id = submit(settings, path).document_id
        wait_until(lambda: _claimed(settings, doc_id, PageStatus.OCR), 60, "the OCR claim")
        (held,) = _page_rows(settings, doc_id)
        for _ in range(3):
            swept = subprocess.run(
                [*UNSHARE, sys.executable, "-m", "docintel", "sweep"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert swept.returncode == 0, swept.stderr
            (page,) = _page_rows(settings, doc_id)
            if page.status == PageStatus.DONE:
                break  # finished under its own lease (a slow machine): checked below
            assert page.claim_token == held.claim_token, "a live lease was freed"
        (state,) = wait(settings, [doc_id], timeout_s=60)
        assert state.status == "done", worker.log()
    (page,) = _page_rows(settings, doc_id)
    assert (page.status, page.error_code, page.attempts) == (PageStatus.DONE, None, 1)


def test_cutting_a_claimers_connections_costs_no_lease_time(
    own_db: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the retry found the page claimed by itself and did nothing; the document
    waited for the stuck timeout (15 minutes), or forever without a sweeper."""
    env = _env(
        tmp_path,
        own_db,
        broker,
        # A lease far longer than the test: recovery by a lapse would be too late.
        DOCINTEL_LEASE_S="120",
        DOCINTEL_SWEEP_INTERVAL_S="1",
        DOCINTEL_TEST_STAGE_DELAYS='{"render": 3, "ocr": 3}',
    )
    settings = apply_env(monkeypatch, env)
    path = fx.make_scanned_pdf(
        tmp_path / "cut.pdf", ["Connections cut twice\nand a second line of words"], dpi=100
    )
    admin = create_engine(own_db, isolation_level="AUTOCOMMIT")

    def cut_while_paused(worker: WorkerProcess) -> None:
        worker.pause()
        with admin.connect() as conn:
            cut = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        worker.resume()
        assert cut, "the worker had no connection to cut"

    try:
        with running_worker(env) as worker:
            doc_id = submit(settings, path).document_id
            wait_until(lambda: _claimed(settings, doc_id, PageStatus.PENDING), 30, "the render")
            cut_while_paused(worker)
            wait_until(lambda: _claimed(settings, doc_id, PageStatus.OCR), 30, "the OCR claim")
            cut_while_paused(worker)
            resumed = time.monotonic()
            (state,) = wait(settings, [doc_id], timeout_s=60)
            assert state.status == "done", worker.log()
            assert time.monotonic() - resumed < 30  # not the 120 s lease
    finally:
        admin.dispose()
    (page,) = _page_rows(settings, doc_id)
    assert (page.status, page.attempts) == (PageStatus.DONE, 1)


def test_a_document_submitted_while_the_broker_is_down_runs_once_it_is_back(
    own_db: str, broker: str, tmp_path: Path
) -> None:
    """Was: "connection refused", then ``queued: timed out`` with the broker back."""
    path = fx.make_text_pdf(tmp_path / "later.pdf", ["Sent while the broker was down"])
    out = tmp_path / "out"
    dead = f"redis://127.0.0.1:{_dead_port()}/0"

    def cli(broker_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **_env(tmp_path, own_db, broker_url)}
        argv = [sys.executable, "-m", "docintel", "process", str(path), "--out", str(out)]
        return subprocess.run([*argv, *extra], env=env, capture_output=True, text=True, timeout=180)

    down = cli(dead)
    assert down.returncode == 1
    assert "cannot reach the broker" in down.stderr and "Traceback" not in down.stderr
    with session_scope(own_db) as session:
        assert session.scalar(select(Document.status)) == "queued"
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1

    # With the broker back but no worker yet, the command says so within seconds.
    started = time.monotonic()
    lonely = cli(broker, "--timeout", "6")
    assert lonely.returncode == 1
    assert "no worker consumes the 'cpu' queue" in lonely.stderr, lonely.stderr
    assert time.monotonic() - started < 60

    with running_worker(_env(tmp_path, own_db, broker)):
        back = cli(broker, "--timeout", "60")
    assert back.returncode == 0, back.stderr
    assert "no worker consumes" not in back.stderr  # a live worker reported in
    with session_scope(own_db) as session:
        assert session.scalar(select(Document.status)) == "done"


def test_a_killed_worker_and_a_flushed_broker_lose_nothing_with_default_clocks(
    own_db: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the killed worker's pages waited for the stuck timeout (15 minutes) or
    Redis's visibility timeout (an hour), and only a ``--beat`` worker recovered them."""
    env = _env(tmp_path, own_db, broker, DOCINTEL_TEST_STAGE_DELAYS='{"render": 0.5}')
    settings = apply_env(monkeypatch, env)  # default lease and sweep interval
    texts = {
        "digital-a.pdf": [f"Digital A page {n}" for n in range(1, 4)],
        "digital-b.pdf": [f"Digital B page {n}" for n in range(1, 4)],
    }
    scans = {
        "scan.pdf": ["Scanned page one\nwith a second line", "Scanned page two\nwith a second line"]
    }
    paths = [fx.make_text_pdf(tmp_path / name, pages) for name, pages in texts.items()]
    paths += [fx.make_scanned_pdf(tmp_path / n, p, dpi=100) for n, p in scans.items()]
    expected = {**texts, **scans}

    victim = WorkerProcess(env)
    survivor = WorkerProcess(env)
    try:
        victim.wait_ready()
        survivor.wait_ready()
        ids = {path.name: submit(settings, path).document_id for path in paths}
        victim_pids = {str(pid) for pid in victim.pids()}

        def victim_holds_a_lease() -> bool:
            with session_scope(settings.database_url) as session:
                holders = session.scalars(
                    select(Page.claimed_by).where(Page.claim_token.is_not(None))
                ).all()
            return any(h and h.rsplit(":", 1)[-1] in victim_pids for h in holders)

        wait_until(victim_holds_a_lease, 60, "the victim to hold a page")
        finished_before = {
            p.id: _line_ids(settings, p.id)
            for doc_id in ids.values()
            for p in _page_rows(settings, doc_id)
            if p.status == PageStatus.DONE
        }
        victim.kill()  # the whole process group: its sweeps die with it
        redis.Redis.from_url(broker).flushdb()  # every queued message is gone
        killed = time.monotonic()

        done_pages: set[int] = set()

        def all_terminal() -> bool:
            states = progress(settings, ids.values())
            for doc_id in ids.values():
                for p in _page_rows(settings, doc_id):
                    if p.id in done_pages:
                        assert p.status == PageStatus.DONE, f"page {p.id} moved back"
                    if p.status == PageStatus.DONE:
                        done_pages.add(p.id)
            return all(s.terminal for s in states)

        recovered = wait_until(all_terminal, 120, "every document to finish", poll=0.5)
        print(f"\nrecovered {recovered:.1f}s after the kill and the flush")
        assert time.monotonic() - killed < 60, survivor.log()
    finally:
        victim.kill()
        survivor.stop()

    for name, doc_id in ids.items():
        assert progress(settings, [doc_id])[0].status == "done", name
        pages = _page_rows(settings, doc_id)
        assert [p.number for p in pages] == list(range(1, len(expected[name]) + 1))
        for p in pages:
            lines = _line_ids(settings, p.id)
            assert len(lines) == len((p.text or "").splitlines()) >= 1
            if p.id in finished_before:
                assert lines == finished_before[p.id]  # never processed a second time
        if name.startswith("digital"):
            assert [p.text for p in pages] == expected[name]  # each line exactly once


def _dead_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
