"""``docintel sources`` (inbox folders and S3 prefixes) and ``docintel beat`` (their schedule)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from docintel.settings import OcrMode, get_settings

sources_app = typer.Typer(
    help="Inbox folders and S3 prefixes that are scanned for new files.", no_args_is_help=True
)


@sources_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A short name; documents record it as their source")],
    uri: Annotated[str, typer.Argument(help="A folder, file:///folder or s3://bucket/prefix")],
    settle_s: Annotated[
        float,
        typer.Option(min=0, help="Also wait until a file is this many seconds old (slow writers)"),
    ] = 0,
    ocr_mode: Annotated[OcrMode | None, typer.Option(help="auto | always | never")] = None,
    dpi: Annotated[int | None, typer.Option(help="Render resolution")] = None,
    tables: Annotated[bool | None, typer.Option("--tables/--no-tables")] = None,
    ocr_engine: Annotated[str | None, typer.Option(help="OCR engine for its files")] = None,
    table_engine: Annotated[str | None, typer.Option(help="Table engine for its files")] = None,
    chart_engine: Annotated[str | None, typer.Option(help="Chart engine for its files")] = None,
    replace: Annotated[bool, typer.Option(help="Change the source of that name")] = False,
) -> None:
    """Add a source. A file is taken once two scans saw it unchanged, then filed away:
    folders move it to processed/ or failed/ inside the folder, S3 tags it docintel=<outcome>."""
    from docintel.cli.main import _database, _fail
    from docintel.cli.results import chosen_options
    from docintel.ingestion.catalog import SourceError, SourceSpec, add_source

    options = chosen_options(
        ocr_mode=ocr_mode,
        dpi=dpi,
        tables=tables,
        ocr_engine=ocr_engine,
        table_engine=table_engine,
        chart_engine=chart_engine,
    )
    if settle_s:
        options["settle_s"] = settle_s
    try:
        with _database() as session:
            row = add_source(session, SourceSpec(name, uri, options), replace=replace)
            typer.echo(f"source {row.name}: {row.uri}")
    except SourceError as error:
        _fail(str(error))


@sources_app.command("list")
def list_sources() -> None:
    """The sources: name, location, last scan, files imported, waiting and failed."""
    from sqlalchemy import func, select

    from docintel.cli.main import _database
    from docintel.models import Source, SourceFile

    with _database() as session:
        counts: dict[tuple[int, str], int] = {
            (source_id, state): n
            for source_id, state, n in session.execute(
                select(SourceFile.source_id, SourceFile.state, func.count()).group_by(
                    SourceFile.source_id, SourceFile.state
                )
            )
        }
        for row in session.scalars(select(Source).order_by(Source.name)):
            last = row.last_scan_at
            scanned = last.isoformat(timespec="seconds") if last else "never"
            tally = " ".join(
                f"{state} {counts.get((row.id, state), 0)}"
                for state in ("imported", "seen", "failed")
            )
            line = f"{row.name}\t{row.uri}\tscanned {scanned}\t{tally}"
            if row.last_error:
                line += f"\terror: {row.last_error}"
            typer.echo(line)


@sources_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The source's name")]) -> None:
    """Stop scanning a source (its documents stay)."""
    from docintel.cli.main import _database, _fail
    from docintel.ingestion.catalog import remove_source

    with _database() as session:
        if not remove_source(session, name):
            _fail(f"no source named {name!r}")
    typer.echo(f"removed source {name}")


@sources_app.command("scan")
def scan() -> None:
    """Scan every source once, now (embedded mode: and process what was taken)."""
    from docintel.cli.main import _ready_settings

    _scan_once(_ready_settings())


@sources_app.command("health")
def health(
    max_age_s: Annotated[
        float | None,
        typer.Option(help="Oldest acceptable last scan (default: 3 intervals + 30 s)"),
    ] = None,
) -> None:
    """Exit 1 if an enabled source was not scanned lately: beat, broker or workers are stuck.

    Meant as the health check of the beat service; a source that cannot be read
    (its last_error) is the user's to fix and does not make the service unhealthy.
    """
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from docintel.cli.main import _database, _fail
    from docintel.models import Source
    from docintel.models.base import as_utc

    settings = get_settings()
    limit = timedelta(seconds=max_age_s or 3 * settings.scan_interval_s + 30)
    now = datetime.now(UTC)
    with _database() as session:
        rows = session.execute(
            select(Source.name, Source.last_scan_at, Source.created_at).where(Source.enabled)
        ).all()
    stale = []
    for name, scanned, created in rows:
        since = as_utc(scanned or created)  # a new source gets its first interval's grace
        if now - since > limit:
            stale.append(name)
    if stale:
        _fail(f"not scanned in the last {limit.total_seconds():g} s: {', '.join(stale)}")
    typer.echo(f"ok: {len(rows)} sources scanned within {limit.total_seconds():g} s")


def beat(
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "info",
) -> None:
    """Scan the sources every DOCINTEL_SCAN_INTERVAL_S seconds.

    Distributed: Celery beat sends the scans to the workers (or run `docintel worker
    --beat`); two beats are safe. Embedded: scans and processes here until Ctrl-C.
    """
    from docintel.cli.main import _ready_settings

    settings = _ready_settings()
    if not settings.embedded:
        from docintel.queue.worker import start_beat

        start_beat(loglevel)
        return
    typer.echo(f"scanning every {settings.scan_interval_s:g} s; Ctrl-C stops", err=True)
    try:
        while True:
            try:
                _scan_once(settings)
            except Exception as error:  # the database away, say: the next scan tries again
                typer.echo(f"docintel: the scan failed, trying again: {error}", err=True)
            time.sleep(settings.scan_interval_s)
    except KeyboardInterrupt:
        from docintel.cli.process import leave_interrupted

        leave_interrupted()  # the same clean exit 130 as an interrupted `process`


def _scan_once(settings: Any) -> None:
    from docintel.ingestion.scan import scan_all

    for report in scan_all(settings or get_settings()):
        if report.error:
            typer.echo(f"{report.source}: cannot scan: {report.error}", err=True)
            continue
        parts = [f"{report.listed} files", f"{len(report.imported)} imported"]
        if report.refused:
            parts.append(f"{len(report.refused)} refused ({', '.join(report.refused)})")
        if report.waiting:
            parts.append(f"{report.waiting} waiting until unchanged")
        typer.echo(f"{report.source}: {', '.join(parts)}", err=True)
