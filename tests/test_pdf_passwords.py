"""Encrypted PDFs with their password: processed end to end, the password never in clear.

The CLI runs in a subprocess with every logger at DEBUG, so anything that logged
the password would show it; the SQLite file, the outputs and the key file are
read from disk as they are.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from docintel import migrate
from docintel.errors import DocumentError
from docintel.passwords import SEALED_OPTION, SecretKeyError, document_password, seal_options
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env

_RUN_WITH_DEBUG_LOGS = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from docintel.cli.main import app
sys.argv[0] = "docintel"
app()
"""


def _docintel(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    return subprocess.run(
        [sys.executable, "-c", _RUN_WITH_DEBUG_LOGS, *args],
        env=base | {"DOCINTEL_DATA_DIR": str(tmp_path / "state"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_process_with_password_reads_the_pdf_and_never_keeps_it_in_clear(tmp_path: Path) -> None:
    password = f"pw-{uuid.uuid4().hex[:12]}"
    locked = fx.make_encrypted_pdf(
        tmp_path / "locked.pdf", ["Quarterly secrets inside"], user_password=password
    )
    out = tmp_path / "out"
    argv = ["process", str(locked), "--out", str(out)]

    refused = _docintel(tmp_path, *argv, "--quiet")
    assert refused.returncode == 1
    assert "password-protected; submit it with its password" in refused.stderr

    # The environment variable is the other way in; a wrong password is said to be wrong.
    wrong = _docintel(tmp_path, *argv, "--quiet", DOCINTEL_PDF_PASSWORD="not-it")
    assert wrong.returncode == 1
    assert "encrypted: the password given for the PDF is wrong" in wrong.stderr

    # The document failed for want of the password: given it, it runs again at once.
    done = _docintel(tmp_path, *argv, "--password", password)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "locked.json").read_text())
    assert result["document"]["status"] == "done"
    assert result["pages"][0]["text"] == "Quarterly secrets inside"

    assert "DEBUG:" in done.stderr  # the logs were on, and said things
    assert password not in done.stdout + done.stderr
    state = tmp_path / "state"
    for path in _files_under(state) + _files_under(out):  # the database, blobs, outputs
        assert password.encode() not in path.read_bytes(), path

    key_file = state / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = _stored_options(state)
    assert set(sealed) == {SEALED_OPTION}
    settings = Settings(data_dir=state)
    assert document_password(settings, sealed) == password  # the same key, reused


def _stored_options(state: Path) -> dict[str, str]:
    import sqlite3

    with sqlite3.connect(state / "docintel.db") as conn:
        (raw,) = conn.execute("SELECT options FROM documents").fetchone()
    return dict(json.loads(raw))


def test_distributed_mode_without_a_secret_key_refuses_a_password_in_one_line(
    tmp_path: Path,
) -> None:
    locked = fx.make_encrypted_pdf(tmp_path / "locked.pdf", user_password="pw")
    env = {
        "DOCINTEL_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "DOCINTEL_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: refused before
    }
    assert _docintel(tmp_path, "db", "upgrade", **env).returncode == 0
    result = _docintel(
        tmp_path, "process", str(locked), "--out", str(tmp_path / "o"), "--password", "pw", **env
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("docintel:")]
    assert errors == [
        "docintel: PDF passwords need DOCINTEL_SECRET_KEY, the same on every docintel "
        "process; make one with python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())'"
    ]
    assert "Traceback" not in result.stderr


def test_a_worker_with_another_key_fails_the_document_saying_why(tmp_path: Path) -> None:
    ours = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    theirs = Settings(data_dir=tmp_path, secret_key=Fernet.generate_key().decode())
    sealed = seal_options(ours, {"password": "s3cret", "dpi": 150})
    assert sealed["dpi"] == 150 and "s3cret" not in json.dumps(sealed)
    with pytest.raises(DocumentError, match="not the key it was submitted with"):
        document_password(theirs, sealed)
    keyless = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    with pytest.raises(DocumentError, match="need DOCINTEL_SECRET_KEY"):
        document_password(keyless, sealed)
    with pytest.raises(SecretKeyError, match="not a Fernet key"):
        seal_options(Settings(data_dir=tmp_path, secret_key="short"), {"password": "x"})


def test_api_upload_with_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from docintel.api.app import create_app

    url = f"sqlite:///{tmp_path / 'api.db'}"
    migrate.upgrade(url)
    apply_env(monkeypatch, base_env(tmp_path, url))
    password = f"api-{uuid.uuid4().hex[:10]}"
    locked = fx.make_encrypted_pdf(tmp_path / "l.pdf", ["Via the API"], user_password=password)
    with TestClient(create_app()) as client, locked.open("rb") as handle:
        answer = client.post(
            "/v1/documents", files={"file": ("l.pdf", handle)}, data={"password": password}
        )
        assert answer.status_code == 202, answer.text
        doc_id = answer.json()["document_id"]
        deadline = time.monotonic() + 120
        body = _finished(client, doc_id, deadline)
        assert body["document"]["status"] == "done", body["document"]
        assert body["pages"][0]["text"] == "Via the API"
        views = [client.get(f"/v1/documents/{doc_id}{v}").text for v in ("", "/job", "/markdown")]
        listing = client.get("/v1/documents").text
        # A reprocess with other options keeps the password it was submitted with.
        again = client.post(f"/v1/documents/{doc_id}/reprocess", json={"options": {"dpi": 100}})
        assert again.status_code == 202, again.text
        body = _finished(client, doc_id, deadline)
        assert body["document"]["status"] == "done", body["document"]
        assert body["pages"][0]["text"] == "Via the API"
    assert all(password not in text for text in [*views, listing])
    for path in _files_under(tmp_path):  # the database (and its journal), blobs, keys
        assert password.encode() not in path.read_bytes(), path


def _finished(client: TestClient, doc_id: str, deadline: float) -> dict[str, Any]:
    """The document's contract once it is no longer queued or processing."""
    while (body := client.get(f"/v1/documents/{doc_id}").json())["document"]["status"] in (
        "queued",
        "processing",
    ):
        assert time.monotonic() < deadline, body["document"]
        time.sleep(0.1)
    result: dict[str, Any] = body
    return result
