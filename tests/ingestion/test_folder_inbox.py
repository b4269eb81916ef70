"""Scheduled ingestion from an inbox folder, on the embedded setup (SQLite, in-process queue).

Each scan here is one call of the real scan; what happens in between (a file
written, grown, replaced, deleted, a folder removed) is what a user would do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from docintel import migrate
from docintel.db import session_scope
from docintel.ingestion import scan as scan_module
from docintel.ingestion.catalog import SourceSpec, add_source
from docintel.ingestion.inboxes import FolderInbox, Listed
from docintel.ingestion.scan import ScanReport, scan_all
from docintel.models import Document, DocumentStatus, Source, SourceFile
from docintel.settings import Settings
from tests.fixtures import documents as fx
from tests.runtime import apply_env, base_env


@pytest.fixture(autouse=True)
def back_to_back_scans_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Here a second scan right after the first may take a file; the one-second floor
    between sightings has its own test."""
    monkeypatch.setattr(scan_module, "_MIN_UNCHANGED", timedelta(0))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    migrate.upgrade(url)
    return apply_env(monkeypatch, base_env(tmp_path, url))


@pytest.fixture
def inbox(tmp_path: Path, settings: Settings) -> Path:
    folder = tmp_path / "in box"
    folder.mkdir()
    with session_scope(settings.database_url) as session:
        add_source(session, SourceSpec("scans", str(folder)))
    return folder


def scan(settings: Settings) -> ScanReport:
    (report,) = scan_all(settings)
    return report


def documents(settings: Settings) -> list[Document]:
    with session_scope(settings.database_url) as session:
        return list(session.scalars(select(Document).order_by(Document.created_at)))


def states(settings: Settings) -> dict[str, list[str]]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(select(SourceFile.path, SourceFile.state).order_by(SourceFile.id))
        found: dict[str, list[str]] = {}
        for path, state in rows:
            found.setdefault(path, []).append(state)
        return found


def test_a_file_is_taken_on_the_second_scan_then_filed_under_processed(
    settings: Settings, inbox: Path
) -> None:
    name = "sub dir/Factura ñº 7 (März) 日本.pdf"
    fx.make_text_pdf(_new(inbox / name), ["Invoice total 4711 EUR"])

    first = scan(settings)
    assert (first.listed, first.waiting, first.imported) == (1, 1, [])
    assert documents(settings) == []

    second = scan(settings)
    assert len(second.imported) == 1
    (doc,) = documents(settings)
    assert doc.id == second.imported[0]
    assert (doc.filename, doc.source, doc.status) == (
        "Factura ñº 7 (März) 日本.pdf",
        "scans",
        DocumentStatus.DONE,
    )
    assert not (inbox / name).exists()
    assert (inbox / "processed" / name).is_file()
    assert states(settings) == {name: ["imported"]}

    # Filed-away files are not listed again.
    assert scan(settings).listed == 0


def test_a_file_still_being_written_waits_until_it_stops_changing(
    settings: Settings, inbox: Path, tmp_path: Path
) -> None:
    whole = fx.make_text_pdf(tmp_path / "whole.pdf", ["Growing file"]).read_bytes()
    target = inbox / "growing.pdf"
    target.write_bytes(whole[: len(whole) // 2])
    assert scan(settings).imported == []
    with target.open("ab") as handle:
        handle.write(whole[len(whole) // 2 :])
    grown = scan(settings)
    assert grown.imported == [] and grown.waiting == 1  # a new version: seen once so far
    assert documents(settings) == []

    taken = scan(settings)
    (doc,) = documents(settings)
    assert taken.imported == [doc.id]
    assert doc.sha256 == hashlib.sha256(whole).hexdigest()  # the whole file, not the half
    assert doc.status == DocumentStatus.DONE
    assert states(settings) == {"growing.pdf": ["changed", "imported"]}


def test_settle_delay_holds_a_fresh_file_back(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    with session_scope(settings.database_url) as session:
        add_source(session, SourceSpec("slow", str(folder), {"settle_s": 3600}))
    path = fx.make_text_pdf(folder / "fresh.pdf", ["fresh"])
    scan(settings)
    assert scan(settings).waiting == 1  # unchanged twice, but written just now
    hour_ago = path.stat().st_mtime - 7200
    os.utime(path, (hour_ago, hour_ago))
    scan(settings)  # a new mtime is a new version: seen once
    assert len(scan(settings).imported) == 1


def test_the_same_bytes_dropped_twice_make_one_document(settings: Settings, inbox: Path) -> None:
    fx.make_text_pdf(inbox / "a.pdf", ["Same content twice"])
    scan(settings)
    (first,) = scan(settings).imported
    shutil.copyfile(inbox / "processed" / "a.pdf", inbox / "a.pdf")  # dropped again
    shutil.copyfile(inbox / "processed" / "a.pdf", inbox / "copy of a.pdf")
    scan(settings)
    again = scan(settings)
    assert again.imported == [first, first]
    assert len(documents(settings)) == 1
    # The second "a.pdf" does not overwrite the first in processed/.
    filed = sorted(p.name for p in (inbox / "processed").iterdir())
    assert filed == ["a (2).pdf", "a.pdf", "copy of a.pdf"]


def test_a_replaced_file_is_taken_in_its_new_version(
    settings: Settings, inbox: Path, tmp_path: Path
) -> None:
    fx.make_text_pdf(inbox / "report.pdf", ["First draft"])
    scan(settings)
    replacement = fx.make_text_pdf(tmp_path / "v2.pdf", ["Final version with more words"])
    os.replace(replacement, inbox / "report.pdf")
    assert scan(settings).imported == []  # the old version is gone, the new one seen once
    (doc_id,) = scan(settings).imported
    with session_scope(settings.database_url) as session:
        text = json.dumps(_page_texts(session, doc_id))
    assert "Final version" in text and "First draft" not in text
    assert states(settings) == {"report.pdf": ["changed", "imported"]}


def test_a_copy_that_races_a_writer_is_given_back(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "x.pdf"
    path.write_bytes(b"%PDF-1.4 first")
    st = path.stat()
    listed = Listed("x.pdf", st.st_size, st.st_mtime_ns)
    path.write_bytes(b"%PDF-1.4 second, longer")
    inbox = FolderInbox(folder)
    assert inbox.fetch(listed, tmp_path / "copy") is False
    inbox.file_away(listed, "processed")  # the new version stays for the next scan
    assert path.exists()
    path.unlink()
    assert inbox.fetch(listed, tmp_path / "copy") is False  # deleted: nothing to take


def test_a_file_deleted_between_scans_is_forgotten(settings: Settings, inbox: Path) -> None:
    fx.make_text_pdf(inbox / "oops.pdf", ["dropped by mistake"])
    scan(settings)
    (inbox / "oops.pdf").unlink()
    report = scan(settings)
    assert (report.listed, report.imported, report.error) == (0, [], None)
    assert documents(settings) == []
    assert states(settings) == {"oops.pdf": ["gone"]}


def test_a_folder_that_disappears_is_reported_and_picked_up_again(
    settings: Settings, inbox: Path
) -> None:
    shutil.rmtree(inbox)
    report = scan(settings)
    assert report.error is not None and "not a folder" in report.error
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Source.last_error)) == report.error
    inbox.mkdir()
    fx.make_text_pdf(inbox / "back.pdf", ["back again"])
    scan(settings)
    assert len(scan(settings).imported) == 1
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Source.last_error)) is None


def test_a_file_docintel_cannot_read_is_filed_under_failed(settings: Settings, inbox: Path) -> None:
    (inbox / "notes.txt").write_text("not a document")
    (inbox / ".partial.pdf").write_bytes(b"%PDF being copied")  # hidden: still being written
    scan(settings)
    report = scan(settings)
    assert report.refused == ["notes.txt"] and report.imported == []
    assert (inbox / "failed" / "notes.txt").is_file()
    assert (inbox / ".partial.pdf").is_file()
    with session_scope(settings.database_url) as session:
        row = session.scalars(select(SourceFile)).one()
        assert row.state == "failed" and row.error and "unsupported" in row.error
        assert session.scalar(select(func.count()).select_from(Document)) == 1


def test_sources_from_settings_are_scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    migrate.upgrade(url)
    folder = tmp_path / "from-env"
    folder.mkdir()
    sources = json.dumps(
        [
            {"name": "typo", "uri": folder.as_uri(), "options": {"ocr_engine": "tesseract"}},
            {"uri": "/no/name"},
            {"name": "env-inbox", "uri": folder.as_uri()},  # the bad entries stop nothing
        ]
    )
    settings = apply_env(monkeypatch, {**base_env(tmp_path, url), "DOCINTEL_SOURCES": sources})
    fx.make_text_pdf(folder / "e.pdf", ["from the environment"])
    refused = [r.error or "" for r in scan_all(settings) if r.source == "DOCINTEL_SOURCES"]
    assert len(refused) == 2 and "ocr_engine must be one of" in refused[0], refused
    assert "needs a name and a uri" in refused[1]
    (report,) = [r for r in scan_all(settings) if r.source == "env-inbox"]
    (doc_id,) = report.imported
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(Source.uri)) == str(folder.resolve())
        assert session.get(Document, doc_id).source == "env-inbox"  # type: ignore[union-attr]


def _new(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _page_texts(session: object, doc_id: object) -> list[str]:
    from docintel.models import Page

    query = select(Page.text).where(Page.document_id == doc_id)
    return list(session.scalars(query))  # type: ignore[attr-defined]


def test_an_overlapping_scans_older_listing_never_strands_a_file(
    settings: Settings, inbox: Path
) -> None:
    """Scan Y listed the folder before F arrived; scan X noted F meanwhile. Y's older
    listing must not call F gone, and a version called gone that is listed again waits
    again (it was once stranded for good)."""
    from docintel.ingestion.inboxes import Listing
    from docintel.ingestion.scan import _record
    from docintel.models.base import utcnow

    with session_scope(settings.database_url) as session:
        source_id = session.scalars(select(Source.id)).one()
    y_started = utcnow()
    fx.make_text_pdf(inbox / "late.pdf", ["arrived during a scan"])
    scan(settings)  # scan X notes it
    _record(settings, source_id, Listing(), 0, y_started)  # scan Y, listed before F came
    assert states(settings) == {"late.pdf": ["seen"]}

    _record(settings, source_id, Listing(), 0, utcnow())  # a later listing without it
    assert states(settings) == {"late.pdf": ["gone"]}
    scan(settings)  # listed again: waiting again, then taken
    assert states(settings) == {"late.pdf": ["seen"]}
    assert len(scan(settings).imported) == 1


def test_a_folder_that_cannot_be_read_does_not_make_its_files_gone(
    settings: Settings, inbox: Path
) -> None:
    from docintel.ingestion.inboxes import Listing
    from docintel.ingestion.scan import _record
    from docintel.models.base import utcnow

    fx.make_text_pdf(_new(inbox / "share" / "a.pdf"), ["on a share"])
    scan(settings)
    with session_scope(settings.database_url) as session:
        source_id = session.scalars(select(Source.id)).one()
    blinked = Listing(unreadable=["share"], problems=["cannot read the folder share"])
    _record(settings, source_id, blinked, 0, utcnow())
    assert states(settings) == {"share/a.pdf": ["seen"]}


def test_a_file_swapped_for_a_link_is_not_read_and_links_do_not_lead_out(
    settings: Settings, inbox: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the inbox")
    path = inbox / "report.pdf"
    path.write_bytes(b"x" * len(secret.read_bytes()))
    os.utime(secret, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    st = path.stat()
    listed = Listed("report.pdf", st.st_size, st.st_mtime_ns)
    path.unlink()
    path.symlink_to(secret)  # same size and mtime as the listed file, through the link
    folder = FolderInbox(inbox)
    assert folder.fetch(listed, tmp_path / "copy") is False
    assert not (tmp_path / "copy").exists() or (tmp_path / "copy").read_bytes() == b""

    # A processed/ that is a link out of the inbox: the file stays where it is.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (inbox / "processed").symlink_to(elsewhere)
    path.unlink()
    fx.make_text_pdf(inbox / "real.pdf", ["real"])
    scan(settings)
    report = scan(settings)
    assert len(report.imported) == 1  # imported all the same
    assert (inbox / "real.pdf").exists() and list(elsewhere.iterdir()) == []


def test_a_name_that_is_not_utf8_is_skipped_and_the_rest_is_taken(
    settings: Settings, inbox: Path
) -> None:
    os.close(os.open(os.fsencode(inbox) + b"/bad\xff.pdf", os.O_CREAT | os.O_WRONLY, 0o644))
    fx.make_text_pdf(inbox / "good.pdf", ["good name"])
    scan(settings)
    report = scan(settings)
    assert (report.listed, len(report.imported), report.error) == (1, 1, None)


def test_two_sightings_a_moment_apart_are_not_enough(
    settings: Settings, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two beats scanning at once see a file twice within milliseconds: that says
    nothing about a writer still at work, so a second must pass between sightings."""
    monkeypatch.setattr(scan_module, "_MIN_UNCHANGED", timedelta(seconds=1))
    fx.make_text_pdf(inbox / "fresh.pdf", ["just written"])
    scan(settings)
    assert scan(settings).imported == []
    time.sleep(1.05)
    assert len(scan(settings).imported) == 1
