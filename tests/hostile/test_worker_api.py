"""Every hostile kind uploaded over HTTP to a real ``docintel serve`` in front of a real worker.

One API and one worker (Postgres, Redis) take all the files in a row, as an
attacker would send them; a normal PDF goes last. Each hostile file must be
refused at the upload (413/415) or end with its own error code within 60 s,
and the normal PDF must still come out ``done`` from the very same worker
processes: nothing crashed, hung or was replaced on the way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from docintel.db import session_scope
from docintel.models import TERMINAL_STATUSES, Document
from docintel.settings import Settings
from tests import services
from tests.api.server import running_api
from tests.fixtures import documents as fx
from tests.hostile.files import HOSTILE, Hostile
from tests.runtime import apply_env, base_env, running_worker

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.worker]

DEADLINE_S = 60.0
CUT = -1  # no answer: the connection was closed while the upload was still being sent
# A wrong password sent with an encrypted file: it must never be written in clear.
WRONG_PASSWORD = "hostile-Wr0ng-passw0rd"
# Client paths and names the API must reduce to a plain base name.
CLIENT_NAMES = {
    "../../etc/passwd.pdf": "passwd.pdf",
    "..\\..\\Windows\\win.pdf": "win.pdf",
    "Rechnung März 日本 (1).pdf": "Rechnung März 日本 (1).pdf",
}


@dataclass
class Outcome:
    http_status: int
    status: str | None = None
    error_code: str | None = None
    filename: str | None = None
    seconds: float | None = None  # from the upload to the end


@dataclass
class Run:
    outcomes: dict[str, Outcome]  # by the name the file was uploaded as
    worker_pids_before: set[int]
    worker_pids_after: set[int]
    worker_log: str
    tmp: Path
    settings: Settings


@pytest.fixture(scope="module")
def run(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("hostile")
    files = [case.write(tmp / "in") for case in HOSTILE]
    wrong_password = fx.make_encrypted_pdf(tmp / "in" / "wrong-password.pdf", ["Other secret"])
    named = [fx.make_text_pdf(tmp / "in" / f"named{n}.pdf", [f"Name {n}"]) for n in range(3)]
    normal = fx.make_text_pdf(tmp / "in" / "normal.pdf", ["An ordinary invoice, total 42 EUR"])
    with services.redis_database() as broker, pytest.MonkeyPatch.context() as mp:
        env = base_env(tmp, pg_url, broker) | {
            "DOCINTEL_SECRET_KEY": Fernet.generate_key().decode(),
            "DOCINTEL_OCR_MODE": "never",  # the blank self-reference page needs no OCR model
        }
        settings = apply_env(mp, env)
        headers = {"Authorization": f"Bearer {_api_key(env)}"}
        with running_worker(env, concurrency=2) as worker, running_api(env) as api:
            before = worker.pids()
            uploads: list[tuple[Path, str, dict[str, str]]] = [(p, p.name, {}) for p in files]
            uploads.append((wrong_password, wrong_password.name, {"password": WRONG_PASSWORD}))
            uploads += [(path, name, {}) for path, name in zip(named, CLIENT_NAMES, strict=True)]
            uploads.append((normal, normal.name, {}))
            outcomes = _upload_all(api.url, headers, uploads, settings)
            after = worker.pids()
            log = worker.log_path.read_text(errors="replace")
        yield Run(outcomes, before, after, log, tmp, settings)


def _api_key(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "docintel", "apikey", "create", "hostile test"],
        env=clean | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _upload_all(
    url: str,
    headers: dict[str, str],
    uploads: list[tuple[Path, str, dict[str, str]]],
    settings: Settings,
) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    sent_at: dict[uuid.UUID, tuple[str, float]] = {}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for path, name, fields in uploads:
            with path.open("rb") as handle:
                try:
                    answer = client.post(
                        "/v1/documents", files={"file": (name, handle)}, data=fields
                    )
                    status = answer.status_code
                except httpx.HTTPError:
                    status = CUT  # the server may close a too-large stream before answering
            outcomes[name] = Outcome(status)
            if status == 202:
                sent_at[uuid.UUID(answer.json()["document_id"])] = (name, time.monotonic())
    _follow(settings, sent_at, outcomes)
    return outcomes


def _follow(
    settings: Settings, sent_at: dict[uuid.UUID, tuple[str, float]], outcomes: dict[str, Outcome]
) -> None:
    """Poll the database until every document ends, noting how long each took."""
    last = max(started for _, started in sent_at.values())
    while True:
        with session_scope(settings.database_url) as session:
            rows = session.execute(
                select(Document.id, Document.status, Document.error_code, Document.filename).where(
                    Document.id.in_(sent_at)
                )
            ).all()
        now = time.monotonic()
        for doc_id, status, code, filename in rows:
            name, started = sent_at[doc_id]
            outcome = outcomes[name]
            if outcome.seconds is None and status in TERMINAL_STATUSES:
                outcome.status, outcome.error_code = str(status), code
                outcome.filename, outcome.seconds = filename, now - started
        if all(outcomes[name].seconds is not None for name, _ in sent_at.values()):
            return
        if now - last > DEADLINE_S + 5:
            return  # the tests below say which did not end
        time.sleep(0.2)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.kind for case in HOSTILE])
def test_each_hostile_file_ends_with_its_own_code_in_time(run: Run, case: Hostile) -> None:
    outcome = run.outcomes[case.filename]
    if case.refused_at_upload is not None:
        assert outcome.http_status in (case.refused_at_upload, CUT), outcome
        return
    assert outcome.http_status == 202, outcome
    assert outcome.seconds is not None, f"{case.kind} never ended:\n{run.worker_log[-3000:]}"
    assert (outcome.status, outcome.error_code) == (case.status, case.code and str(case.code))
    assert outcome.seconds < DEADLINE_S


def test_the_worker_kept_working(run: Run) -> None:
    normal = run.outcomes["normal.pdf"]
    assert (normal.status, normal.error_code) == ("done", None), run.worker_log[-3000:]
    # The same main and pool processes: none crashed and was replaced by Celery.
    assert run.worker_pids_after == run.worker_pids_before
    name, slowest = max(run.outcomes.items(), key=lambda item: item[1].seconds or 0)
    print(f"slowest document: {name}, {slowest.seconds:.1f} s")  # shown with -s


def test_client_paths_become_base_names_and_nothing_is_written_outside_the_stores(
    run: Run,
) -> None:
    for sent, stored in CLIENT_NAMES.items():
        outcome = run.outcomes[sent]
        assert (outcome.http_status, outcome.status, outcome.filename) == (202, "done", stored)
    assert not Path("/etc/passwd.pdf").exists()
    written = {path.name for path in run.tmp.rglob("*")}
    assert not written & {"passwd.pdf", "win.pdf", "etc", "Windows"}


def test_a_password_is_neither_logged_nor_stored_in_clear(run: Run) -> None:
    outcome = run.outcomes["wrong-password.pdf"]
    assert (outcome.status, outcome.error_code) == ("failed", "encrypted"), outcome
    assert WRONG_PASSWORD not in run.worker_log
    with session_scope(run.settings.database_url) as session:
        dump = session.execute(
            text("SELECT string_agg(d::text, '|') FROM documents d")
        ).scalar_one()
        jobs = session.execute(text("SELECT string_agg(j::text, '|') FROM jobs j")).scalar_one()
    assert WRONG_PASSWORD not in dump and WRONG_PASSWORD not in (jobs or "")
