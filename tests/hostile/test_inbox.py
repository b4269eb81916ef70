"""Hostile files dropped into an inbox folder (embedded setup: SQLite, in-process queue).

A file refused at the door (not a document docintel reads) is filed under
``failed/``; one taken in and failed while processing ends with its code; a
link to a file outside the inbox is never followed. The 1 GB file is left out
here: the inbox copies what it takes, and a copy of a sparse file is not sparse.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from docintel import migrate
from docintel.db import session_scope
from docintel.ingestion.catalog import SourceSpec, add_source
from docintel.ingestion.scan import scan_all
from docintel.models import Document
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.hostile.files import by_kind
from tests.runtime import apply_env, base_env

CASES = by_kind(
    "truncated",
    "AES-256",
    "claims 100,000 pages",
    "Kids is itself",
    "20,000 pt page",
    "50,000 px image",
    "6,000-frame TIFF",
    "ZIP as .pdf",
    "HTML as .pdf",
)
# Non-ASCII folders, one named like a way up ("..x" is a name; a leading dot hides it).
SUBFOLDER = "Eingang ünï/日本 ..x.."


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    migrate.upgrade(url)
    env = base_env(tmp_path, url) | {"DOCINTEL_OCR_MODE": "never"}
    return apply_env(monkeypatch, env)


def test_hostile_files_in_an_inbox_end_with_their_codes_and_refused_ones_are_filed_away(
    settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    drop = inbox / SUBFOLDER
    for case in CASES:
        case.write(drop)
    (tmp_path / "outside").mkdir()
    secret = fx.make_text_pdf(tmp_path / "outside" / "secret.pdf", ["Outside the inbox"])
    (drop / "link.pdf").symlink_to(secret)
    with session_scope(settings.database_url) as session:
        add_source(session, SourceSpec("hostile", str(inbox)))

    scan_all(settings)  # first sight: files must stop changing before they are taken
    time.sleep(1.05)  # and sightings less than a second apart do not count
    (report,) = scan_all(settings)

    refused = sorted(Path(path).name for path in report.refused)
    assert refused == sorted(c.filename for c in CASES if c.refused_at_upload), report
    with session_scope(settings.database_url) as session:
        found = {doc.filename: doc for doc in session.scalars(select(Document))}
    assert set(found) == {case.filename for case in CASES}  # the link was not followed
    for case in CASES:
        doc = found[case.filename]
        assert (doc.status, doc.error_code) == (case.status, case.code), case.kind
        outcome = "failed" if case.refused_at_upload else "processed"
        assert (inbox / outcome / drop.relative_to(inbox) / case.filename).is_file(), case.kind
    assert (drop / "link.pdf").is_symlink() and secret.is_file()
