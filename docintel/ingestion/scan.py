"""One scan of a source: note what is there, import what has stopped changing, exactly once.

Each file version (path, size, mtime) gets one ``source_files`` row, inserted
with "on conflict do nothing", so scans that overlap (two beat processes, a
scan that outlives its interval) agree on one row. A version is taken once it
was seen by an earlier scan unchanged, and its modification time is
``settle_s`` old: a file still being written changes between scans and waits.
Taking it is a conditional update ``seen -> importing`` that one scan wins.

A scan that dies while importing leaves the row ``importing``; after
``stuck_after_s`` it is ``seen`` again and imported anew. That is safe: the
document store deduplicates by content, so the same bytes never make a second
document, and the file is filed away then.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from docintel.db import session_scope
from docintel.ingestion.catalog import SourceSpec, spec_of, sync_from_settings
from docintel.ingestion.inboxes import (
    Inbox,
    Listed,
    Listing,
    Outcome,
    SourceUnavailable,
    open_inbox,
)
from docintel.models import Document, DocumentStatus, Source, SourceFile
from docintel.models.base import as_utc, utcnow
from docintel.settings import Settings

log = logging.getLogger(__name__)

# Two sightings of an unchanged version this close together (two beats scanning at
# once) say nothing about a writer that is still at work.
_MIN_UNCHANGED = timedelta(seconds=1)


@dataclass(slots=True)
class ScanReport:
    source: str
    listed: int = 0
    waiting: int = 0  # seen, not yet known to be complete
    imported: list[uuid.UUID] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # taken, but the document failed at once
    error: str | None = None


def scan_all(settings: Settings) -> list[ScanReport]:
    """Scan every enabled source once (those in ``DOCINTEL_SOURCES`` are added first)."""
    reports = []
    with session_scope(settings.database_url) as session:
        for refused in sync_from_settings(session, settings.sources):
            log.error("%s", refused)
            reports.append(ScanReport(source="DOCINTEL_SOURCES", error=str(refused)))
        ids = session.scalars(select(Source.id).where(Source.enabled).order_by(Source.id)).all()
    for source_id in ids:
        try:
            reports.append(scan_source(settings, source_id))
        except Exception as error:  # one source's trouble must not stop the others
            log.exception("source %s: the scan failed", source_id)
            reports.append(ScanReport(source=str(source_id), error=f"the scan failed: {error}"))
            with contextlib.suppress(Exception):
                _note_scan(settings, source_id, f"the scan failed: {error}")
    return reports


def scan_source(settings: Settings, source_id: int) -> ScanReport:
    with session_scope(settings.database_url) as session:
        row = session.get(Source, source_id)
        if row is None:  # removed meanwhile
            return ScanReport(source=str(source_id), error="removed")
        spec = spec_of(row)
    report = ScanReport(spec.name)
    inbox = open_inbox(spec.uri, settings)
    listing_started = utcnow()
    try:
        listing = inbox.list()
    except SourceUnavailable as error:
        log.warning("source %s: %s", spec.name, error)
        report.error = str(error)
        _note_scan(settings, source_id, report.error)
        return report
    report.listed = len(listing.files)
    for problem in listing.problems:
        log.warning("source %s: %s", spec.name, problem)
    stable, report.waiting = _record(settings, source_id, listing, spec.settle_s, listing_started)
    for row_id, item in stable:
        if _claim(settings, row_id):
            _take(settings, spec, inbox, row_id, item, report)
    _note_scan(settings, source_id, None)
    return report


def _record(
    settings: Settings,
    source_id: int,
    listing: Listing,
    settle_s: float,
    listing_started: datetime,
) -> tuple[list[tuple[int, Listed]], int]:
    """Note every listed version; the stable ones to take, and how many still wait.

    Only versions noted before this scan's listing began can be missing from it:
    one an overlapping scan noted meanwhile is left for the next scan to judge.
    Nor is anything under a folder that could not be read called gone.
    """
    scan_started = utcnow()
    listed = listing.files
    with session_scope(settings.database_url) as session:
        _insert_new_versions(session, source_id, listed, scan_started)
        _release_abandoned(session, source_id, scan_started, settings.stuck_after_s)
        by_version = {(i.path, i.size, i.mtime_ns): i for i in listed}
        paths_now = {i.path for i in listed}
        rows = session.execute(
            select(
                SourceFile.id,
                SourceFile.path,
                SourceFile.size_bytes,
                SourceFile.mtime_ns,
                SourceFile.seen_at,
            ).where(SourceFile.source_id == source_id, SourceFile.state == "seen")
        ).all()
        stable, waiting = [], 0
        for row_id, path, size, mtime_ns, seen_at in rows:
            item = by_version.get((path, size, mtime_ns))
            first_seen = as_utc(seen_at)
            if item is None:
                if first_seen >= listing_started or listing.covers_unreadable(path):
                    continue
                # This version is no longer there: rewritten (a newer row exists) or deleted.
                state = "changed" if path in paths_now else "gone"
                _set_state(session, row_id, state, scan_started)
            elif first_seen < scan_started - _MIN_UNCHANGED and _settled(item, settle_s):
                stable.append((row_id, item))
            else:
                waiting += 1
    return stable, waiting


def _insert_new_versions(
    session: Session, source_id: int, listed: list[Listed], now: datetime
) -> None:
    if not listed:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    rows = [
        {
            "source_id": source_id,
            "path": i.path,
            "size_bytes": i.size,
            "mtime_ns": i.mtime_ns,
            "seen_at": now,
            "state": "seen",
        }
        for i in listed
    ]
    # 150 rows of 6 values: under the 999 bound parameters older SQLite allows.
    for start in range(0, len(rows), 150):
        statement = dialect.insert(SourceFile).values(rows[start : start + 150])
        # A version listed again after it was called gone or changed (an overlapping
        # scan's older listing, a share that blinked) is waiting again, from now.
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["source_id", "path", "size_bytes", "mtime_ns"],
                set_={"state": "seen", "seen_at": now, "updated_at": now},
                where=SourceFile.state.in_(("gone", "changed")),
            )
        )


def _release_abandoned(session: Session, source_id: int, now: datetime, after_s: int) -> None:
    """Imports whose scan died give their file back to the next scan."""
    session.execute(
        update(SourceFile)
        .where(
            SourceFile.source_id == source_id,
            SourceFile.state == "importing",
            SourceFile.updated_at < now - timedelta(seconds=after_s),
        )
        .values(state="seen", updated_at=now)
    )


def _settled(item: Listed, settle_s: float) -> bool:
    return time.time() - item.mtime_ns / 1e9 >= settle_s


def _claim(settings: Settings, row_id: int) -> bool:
    """Whether this scan won the file: exactly one of any number of scans does."""
    with session_scope(settings.database_url) as session:
        won = session.execute(
            update(SourceFile)
            .where(SourceFile.id == row_id, SourceFile.state == "seen")
            .values(state="importing", updated_at=utcnow())
        )
        return won.rowcount == 1  # type: ignore[attr-defined]


def _take(
    settings: Settings,
    spec: SourceSpec,
    inbox: Inbox,
    row_id: int,
    item: Listed,
    report: ScanReport,
) -> None:
    from docintel import service

    with tempfile.TemporaryDirectory(prefix="docintel-inbox-") as tmp:
        copy = Path(tmp) / item.name
        try:
            if not inbox.fetch(item, copy):
                _finish(settings, row_id, "changed")
                return
            accepted = service.accept(
                settings,
                copy,
                filename=item.name,
                options=spec.document_options,
                source=spec.name,
            )
        except Exception as error:
            # The store or the database is away: the file stays for a later scan.
            log.warning("source %s: could not import %s: %s", spec.name, item.path, error)
            _finish(settings, row_id, "seen", error=str(error))
            return
    doc_id = accepted.result.document_id
    outcome, error_text, sha256 = _outcome(settings, doc_id)
    try:
        inbox.file_away(item, outcome)
    except Exception as error:  # imported all the same; it stays where it is
        log.warning("source %s: could not file away %s: %s", spec.name, item.path, error)
    _finish(
        settings,
        row_id,
        "imported" if outcome == "processed" else "failed",
        document_id=doc_id,
        sha256=sha256,
        error=error_text,
    )
    if outcome == "processed":
        report.imported.append(doc_id)
    else:
        report.refused.append(item.path)
    try:
        service.start(settings, accepted)
    except service.QueueUnavailable as error:  # stored; the sweep sends it once the broker is back
        log.warning("source %s: %s", spec.name, error)


def _outcome(settings: Settings, doc_id: uuid.UUID) -> tuple[Outcome, str | None, str | None]:
    """Where the file goes, why (if refused), and its hash (the document's: hashed once)."""
    with session_scope(settings.database_url) as session:
        doc = session.get(Document, doc_id)
        if doc is None:  # deleted meanwhile
            return "processed", None, None
        if doc.status == DocumentStatus.FAILED:
            return "failed", f"{doc.error_code}: {doc.error_message}", doc.sha256
        return "processed", None, doc.sha256


def _finish(
    settings: Settings,
    row_id: int,
    state: str,
    *,
    document_id: uuid.UUID | None = None,
    sha256: str | None = None,
    error: str | None = None,
) -> None:
    with session_scope(settings.database_url) as session:
        row = session.get(SourceFile, row_id)
        if row is not None:
            row.state, row.error, row.updated_at = state, error, utcnow()
            if document_id is not None:
                row.document_id, row.sha256 = document_id, sha256


def _set_state(session: Session, row_id: int, state: str, now: datetime) -> None:
    session.execute(
        update(SourceFile).where(SourceFile.id == row_id).values(state=state, updated_at=now)
    )


def _note_scan(settings: Settings, source_id: int, error: str | None) -> None:
    with session_scope(settings.database_url) as session:
        row = session.get(Source, source_id)
        if row is not None:
            row.last_scan_at, row.last_error = utcnow(), error
