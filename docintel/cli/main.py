"""The ``docintel`` command line."""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from docintel.cli.report import ProgressMode
from docintel.settings import OcrMode, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(
    help="docintel: PDFs and scans to structured, queryable data.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
DocumentRef = Annotated[
    str, typer.Argument(help="The document's id, the start of it, or its file name")
]
apikey_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


Revision = Annotated[str, typer.Argument(help="An Alembic revision id, 'head' or 'base'")]


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        from docintel import __version__

        try:
            installed = version("docintel")
        except PackageNotFoundError:  # run from a checkout that was never installed
            installed = __version__
        typer.echo(f"docintel {installed}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """docintel: PDFs and scans to structured, queryable data."""


@db_app.command("upgrade")
def db_upgrade(revision: Revision = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from docintel import migrate

    migrate.upgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Revision) -> None:
    """Revert migrations down to REVISION ('base' removes every table)."""
    from docintel import migrate

    migrate.downgrade(get_settings().database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def process(
    # Not checked by typer: one bad path would refuse the whole batch; run_process
    # reports it and processes the others.
    files: Annotated[list[Path], typer.Argument(help="PDFs and images")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", file_okay=False, help="Folder for <name>.json and <name>.md"),
    ],
    ocr_mode: Annotated[OcrMode | None, typer.Option(help="auto | always | never")] = None,
    dpi: Annotated[
        int | None, typer.Option(help="Render resolution (default from settings)")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Give up waiting after this many seconds")
    ] = None,
    tables: Annotated[
        bool | None,
        typer.Option(
            "--tables/--no-tables",
            help="Find tables and charts and extract them (default from settings)",
        ),
    ] = None,
    pages: Annotated[
        str | None,
        typer.Option(help="Only these pages, e.g. 1-3,7,10- (default: all)"),
    ] = None,
    ocr_engine: Annotated[
        str | None, typer.Option(help="OCR engine for these files: rapidocr, florence2")
    ] = None,
    table_engine: Annotated[
        str | None, typer.Option(help="Table engine for these files: cpu-tables, phi35v, vlm, none")
    ] = None,
    chart_engine: Annotated[
        str | None, typer.Option(help="Chart engine for these files: phi35v, vlm, none")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="DOCINTEL_PDF_PASSWORD",
            show_envvar=True,
            help="Password of encrypted PDFs; kept encrypted, never logged "
            "(the environment variable keeps it out of the shell history)",
        ),
    ] = None,
    ask_password: Annotated[
        bool, typer.Option("--ask-password", help="Prompt for the PDF password, unechoed")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and warnings on stderr")
    ] = False,
    progress: Annotated[
        ProgressMode,
        typer.Option(
            help="auto: a progress line on a terminal and a summary per file (stderr); "
            "jsonl: JSON lines on stdout, progress events and a result per file",
        ),
    ] = "auto",
    reprocess: Annotated[
        bool,
        typer.Option(
            help="Run files processed before again, with these options, replacing their results"
        ),
    ] = False,
) -> None:
    """Process FILES end to end and write the results to --out.

    Embedded (no DOCINTEL_BROKER_URL): runs here, with SQLite and the CPU engine.
    Distributed: submits to the workers and waits. Exit code 0 only if every file is done;
    a path that cannot be read is reported and skipped, the others still run.
    A file whose bytes were processed before reuses those results unless --reprocess.
    """
    from docintel.cli.process import run_process
    from docintel.cli.results import chosen_options

    if ask_password:
        password = typer.prompt("PDF password", hide_input=True, err=True)
    if pages is not None:
        _check_page_range(pages)
    options = chosen_options(
        ocr_mode=ocr_mode,
        dpi=dpi,
        tables=tables,
        pages=pages,
        password=password or None,
        ocr_engine=ocr_engine,
        table_engine=table_engine,
        chart_engine=chart_engine,
    )
    _check_engines(options)
    settings = _ready_settings()  # after the checks: a refused command leaves no state behind
    code = run_process(
        settings,
        files,
        out,
        options,
        timeout=timeout,
        quiet=quiet,
        reprocess=reprocess,
        progress_mode=progress,
    )
    raise typer.Exit(code)


@app.command()
def show(
    document: DocumentRef,
) -> None:
    """Print a document's JSON (the output contract)."""
    from docintel.output import document_json, load_document

    with _database() as session:
        doc = load_document(session, _resolve(session, document))
        if doc is None:  # deleted in between
            _fail(f"no document {document}")
        json.dump(document_json(doc), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")


@app.command("list")
def list_documents(
    status: Annotated[str | None, typer.Option(help="queued, processing, done, ...")] = None,
    source: Annotated[str | None, typer.Option(help="cli, api, or an inbox's name")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first")] = 50,
) -> None:
    """Documents, newest first: id, status, pages, created, file name."""
    from sqlalchemy import select

    from docintel.models import Document, DocumentStatus

    query = select(Document).order_by(Document.created_at.desc(), Document.id.desc())
    if status is not None:
        try:
            query = query.where(Document.status == DocumentStatus(status))
        except ValueError:
            _fail(f"no status {status!r}; one of {', '.join(s.value for s in DocumentStatus)}")
    if source is not None:
        query = query.where(Document.source == source)
    with _database() as session:
        for doc in session.scalars(query.limit(limit)):
            created = doc.created_at.isoformat(timespec="seconds")
            pages = doc.page_count if doc.page_count is not None else "-"
            typer.echo(f"{doc.id}\t{doc.status}\t{pages}\t{created}\t{doc.filename}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words or a phrase; web search syntax on Postgres")],
    limit: Annotated[int, typer.Option(min=1)] = 20,
) -> None:
    """Pages whose text matches: document id, page, file name, and a snippet."""
    import re

    from docintel.search import search_pages

    with _database() as session:
        hits = search_pages(session, query, limit=limit)
    bold = sys.stdout.isatty()
    for hit in hits:
        snippet = re.sub(r"<mark>(.*?)</mark>", r"\033[1m\1\033[0m" if bold else r"\1", hit.snippet)
        typer.echo(f"{hit.document_id}\tpage {hit.page}\t{hit.filename}\t{snippet}")
    if not hits:
        _fail(f"no page matches {query!r}")


@app.command()
def cancel(
    document: DocumentRef,
) -> None:
    """Cancel a document that is still being processed."""
    from docintel.pipeline.cancel import cancel_document

    with _database() as session:
        doc_id = _resolve(session, document)
        outcome = cancel_document(session, doc_id)
    if outcome != "cancelled":
        _fail(f"document {doc_id} has already finished" if outcome == "finished" else "gone")
    typer.echo(f"cancelled {doc_id}")


@app.command()
def delete(
    document: DocumentRef,
) -> None:
    """Delete a finished document: its results, its original and its page images."""
    from docintel.pipeline.context import store_for
    from docintel.pipeline.delete import delete_document

    with _database() as session:
        doc_id = _resolve(session, document)
        outcome = delete_document(session, store_for(get_settings()), doc_id)
    if outcome == "processing":
        _fail(f"document {doc_id} is being processed; `docintel cancel` it first or wait")
    typer.echo(f"deleted {doc_id}")


def _check_page_range(pages: str) -> None:
    from docintel.document.page_ranges import parse_page_range

    try:
        parse_page_range(pages)
    except ValueError as error:
        _fail(f"--pages: {error}")


def _check_engines(options: dict[str, Any]) -> None:
    from docintel.pipeline.routing import engine_choice_error

    if (error := engine_choice_error(options)) is not None:
        _fail(f"--{error.replace('_', '-')}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"docintel: {message}", err=True)
    raise typer.Exit(1)


def _ready_settings() -> Settings:
    """The settings, once the database is ready for this docintel (else one line, exit 1)."""
    settings = get_settings()
    _schema_ready(settings.database_url)
    return settings


@contextmanager
def _database() -> Iterator[Session]:
    """A transaction on a database ready for this docintel."""
    from docintel.db import session_scope

    with session_scope(_ready_settings().database_url) as session:
        yield session


def _resolve(session: Session, ref: str) -> uuid.UUID:
    """The document ``ref`` names (id, id prefix, file name), or one line and exit 1."""
    from docintel.cli.documents import DocumentNotFound, resolve_document

    try:
        return resolve_document(session, ref)
    except DocumentNotFound as error:
        _fail(str(error))


def _schema_ready(database_url: str) -> None:
    """Embedded SQLite migrates itself; elsewhere, one line saying to migrate."""
    from docintel import migrate

    try:
        migrate.ensure_current(database_url)
    except migrate.SchemaNotReady as error:
        _fail(str(error))


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated: cpu, gpu")] = "cpu",
    concurrency: Annotated[
        int | None, typer.Option(help="Processes (default: CPU count; gpu: 1)")
    ] = None,
    beat: Annotated[
        bool,
        typer.Option(help="Also scan the ingestion sources on schedule (as `docintel beat`)"),
    ] = False,
    loglevel: str = "info",
) -> None:
    """Start a Celery worker (distributed mode). Every worker also sweeps, in turn."""
    from docintel.queue.worker import start_worker

    start_worker(queues=queues.split(","), concurrency=concurrency, loglevel=loglevel, beat=beat)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[
        int, typer.Option(help="API processes (distributed mode; embedded runs one)")
    ] = 1,
) -> None:
    """Start the HTTP API (OpenAPI at /docs). Embedded mode processes uploads in this process."""
    import uvicorn

    settings = _ready_settings()
    if settings.embedded and workers > 1:
        # Several processes would each run the pipeline on one SQLite file.
        typer.echo("docintel: embedded mode serves from one process; --workers ignored", err=True)
        workers = 1
    uvicorn.run("docintel.api.app:create_app", factory=True, host=host, port=port, workers=workers)


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="Who or what the key is for")]) -> None:
    """Create a key and print it (the only time it is shown)."""
    from docintel.api import keys

    with _database() as session:
        key = keys.create_key(session, name)
    typer.echo(key)


@apikey_app.command("list")
def apikey_list() -> None:
    """The keys: id, prefix, name, created, last used, revoked."""
    from docintel.api import keys

    with _database() as session:
        rows = keys.list_keys(session)
    for row in rows:
        used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
        revoked = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        created = row.created_at.isoformat(timespec="seconds")
        typer.echo(f"{row.id}\tdi_{row.prefix}\t{row.name}\t{created}\tused {used}\t{revoked}")


@apikey_app.command("revoke")
def apikey_revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix")]) -> None:
    """Revoke a key; requests with it are refused from now on."""
    from docintel.api import keys

    with _database() as session:
        count = keys.revoke_key(session, key)
    if count == 0:
        _fail(f"no active key {key}")
    typer.echo(f"revoked {count} key(s)")


@app.command()
def sweep() -> None:
    """Restart work that stopped moving, now (every worker also does this on its own)."""
    from docintel.queue.base import TRANSIENT_ERRORS
    from docintel.queue.maintenance import sweep_turn

    try:
        sent = sweep_turn(force=True)
    except TRANSIENT_ERRORS as error:
        typer.echo(f"docintel: sweep failed, try again: {type(error).__name__}: {error}", err=True)
        raise typer.Exit(1) from None
    if sent is None:
        typer.echo("another process is sweeping right now")
    else:
        typer.echo(f"swept: {sent} messages sent")


from docintel.cli.sources import beat, sources_app  # noqa: E402 - they use the helpers above

app.add_typer(sources_app, name="sources")
app.command()(beat)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    threading.current_thread().name = "docintel"
    app()
