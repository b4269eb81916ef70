"""A PostgreSQL of the test's own, crashed (immediate stop) and restarted mid-run.

Every connection of the worker dies at once and the database is away for a
few seconds: its tasks fail with connection errors and are retried, and every
page still ends done exactly once. Terminated connections on a running server
(``pg_terminate_backend``) are covered by
``tests/queue/test_exactly_once.py::test_cutting_a_claimers_connections_costs_no_lease_time``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.faults.audit import finished, make_batch, tally
from tests.faults.servers import postgres_server
from tests.runtime import apply_env, base_env, running_worker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

DOWN_S = 4.0


def test_postgres_restart_mid_run_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = make_batch(tmp_path, documents=3, pages=3)
    with postgres_server() as pg, services.redis_database() as broker:
        env = {
            **base_env(tmp_path, pg.url, broker),
            "DOCINTEL_LEASE_S": "3",
            "DOCINTEL_SWEEP_INTERVAL_S": "1",
            "DOCINTEL_TEST_STAGE_DELAYS": '{"render": 1}',
        }
        upgrade = subprocess.run(
            [sys.executable, "-m", "docintel", "db", "upgrade"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert upgrade.returncode == 0, upgrade.stderr
        settings = apply_env(monkeypatch, env)
        with running_worker(env, concurrency=2) as worker:
            # A user's `docintel process` submits the files and waits through the outage.
            jsonl = ["--out", str(tmp_path / "out"), "--progress", "jsonl"]
            cli = subprocess.Popen(
                [sys.executable, "-m", "docintel", "process", *map(str, batch), *jsonl],
                env={**os.environ, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            events = _JsonLines(cli)
            submitted = events.documents(len(batch), timeout_s=90)  # the CLI now only waits
            ids = {doc_id: batch[path] for doc_id, path in submitted.items()}
            all_pages = sum(len(texts) for texts in batch.values())
            wait_until(finished(settings, list(ids), pages=2), 60, "the first pages")
            assert not finished(settings, list(ids), pages=all_pages)(), "ended before the fault"
            pg.stop("immediate")
            time.sleep(DOWN_S)
            pg.start()
            try:
                recover_s = wait_until(finished(settings, list(ids)), 120, "every document")
            except AssertionError:
                raise AssertionError(f"{worker.log()}\n{pg.log()}") from None
            assert worker.proc.poll() is None, "the worker died with the database"
            assert cli.wait(60) == 0, events.stderr()
            err = events.stderr()
            assert "Traceback" not in err
            # It polls twice a second: it saw the outage, said so once, and saw it end.
            assert err.count("the database is unreachable") == 1, err
            assert "the database is back" in err, err
            results = [e for e in events.lines if e["event"] == "result"]
            assert sorted(r["status"] for r in results) == ["done"] * len(batch)

        count = tally(settings, ids)
    count.row("postgres crashed and restarted", recover_s)
    assert (count.done, count.duplicated, count.lost) == (count.expected, 0, 0)


class _JsonLines:
    """The ``--progress jsonl`` events of a running ``docintel process``, read as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._stderr: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def documents(self, count: int, timeout_s: float) -> dict[uuid.UUID, Path]:
        """The first ``count`` documents it reported, once it has reported them all."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = {uuid.UUID(e["document_id"]): Path(e["file"]) for e in list(self.lines)}
            if len(seen) >= count:
                return seen
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"docintel process reported {self.lines}: {self.stderr()}")

    def stderr(self) -> str:
        """Its stderr, once it has exited (read once, kept)."""
        if self.proc.poll() is None:
            return "(still running)"
        if self._stderr is None:
            assert self.proc.stderr is not None
            self._stderr = self.proc.stderr.read()
        return self._stderr
