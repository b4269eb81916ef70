"""Scheduled ingestion on the distributed setup: Postgres, Redis, real processes.

Two scans that overlap, and two beat processes, must import every file exactly once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.ingestion.catalog import SourceSpec, add_source
from docintel.models import Document, DocumentStatus, SourceFile
from docintel.settings import Settings
from tests import services
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env, running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]


def _drop_files(folder: Path, tag: str, count: int) -> None:
    for n in range(count):
        fx.make_text_pdf(folder / f"file {n}.pdf", [f"Scheduled {tag} number {n}"])


def _documents(settings: Settings, source: str) -> list[Document]:
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(Document).where(Document.source == source)))


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "docintel", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_overlapping_scans_import_each_file_once(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "inbox"
    folder.mkdir()
    with services.redis_database() as broker:
        env = base_env(tmp_path, pg_url, broker)
        settings = apply_env(monkeypatch, env)
        with session_scope(settings.database_url) as session:
            add_source(session, SourceSpec(name, str(folder)))
        _drop_files(folder, name, 8)
        first = _cli(env, "sources", "scan")
        assert first.wait(60) == 0, first.stdout and first.stdout.read()

        time.sleep(1.05)  # sightings less than a second apart do not count
        # Both see eight stable files; each file must go to exactly one of them.
        racers = [_cli(env, "sources", "scan") for _ in range(2)]
        outputs = [(r.communicate(timeout=120)[0], r.returncode) for r in racers]
    assert [code for _, code in outputs] == [0, 0], outputs
    imported = [int(out.split(" imported")[0].rsplit(", ", 1)[-1]) for out, _ in outputs]
    assert sum(imported) == 8, outputs

    docs = _documents(settings, name)
    assert len(docs) == 8
    assert sorted(d.filename for d in docs) == [f"file {n}.pdf" for n in range(8)]
    with session_scope(settings.database_url) as session:
        states = session.execute(
            select(SourceFile.state, func.count())
            .where(SourceFile.document_id.in_([d.id for d in docs]))
            .group_by(SourceFile.state)
        ).all()
    assert dict(states) == {"imported": 8}
    assert sorted(p.name for p in (folder / "processed").iterdir()) == [
        f"file {n}.pdf" for n in range(8)
    ]


@pytest.mark.slow
def test_two_beats_and_workers_take_dropped_files_to_done(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"beat-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "inbox"
    folder.mkdir()
    with services.redis_database() as broker:
        env = {**base_env(tmp_path, pg_url, broker), "DOCINTEL_SCAN_INTERVAL_S": "1"}
        settings = apply_env(monkeypatch, env)
        with session_scope(settings.database_url) as session:
            add_source(session, SourceSpec(name, str(folder)))
        # Two schedulers at once: `docintel beat`, and a worker started with --beat.
        beats = [
            _cli({**env, "DOCINTEL_DATA_DIR": str(tmp_path / "beat")}, "beat"),
            _cli(
                {**env, "DOCINTEL_DATA_DIR": str(tmp_path / "worker-beat")},
                *("worker", "--beat", "--concurrency", "1", "--loglevel", "info"),
            ),
        ]
        try:
            with running_worker(env, concurrency=2) as worker:
                _drop_files(folder, name, 3)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    docs = _documents(settings, name)
                    if len(docs) == 3 and all(d.status == DocumentStatus.DONE for d in docs):
                        break
                    time.sleep(0.5)
                time.sleep(3)  # a few more scans: nothing may be imported again
                log = worker.log()
        finally:
            for beat in beats:
                beat.terminate()
            beat_logs = [beat.communicate(timeout=20)[0] for beat in beats]
    docs = _documents(settings, name)
    assert [d.status for d in docs] == [DocumentStatus.DONE] * 3, (log, beat_logs)
    assert "docintel.scan_sources" in log
    assert all("Scheduler: Sending due task scan-sources" in b for b in beat_logs), beat_logs
    assert sorted(p.name for p in (folder / "processed").iterdir()) == [
        f"file {n}.pdf" for n in range(3)
    ]
