"""``docintel process``: submit files, show progress, write the contract JSON and Markdown."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

from docintel.cli.consumers import ConsumerWatch
from docintel.cli.report import (
    NOT_READ,
    FileResult,
    HumanReport,
    JsonLinesReport,
    ProgressMode,
    Report,
)
from docintel.cli.results import (
    asks_for_other_options,
    describe_options,
    output_names,
    write_document,
)
from docintel.models import DocumentStatus
from docintel.passwords import SecretKeyError
from docintel.pipeline.ingest import IngestResult
from docintel.service import Progress, QueueUnavailable, accept, progress, start, wait
from docintel.settings import Settings


def run_process(
    settings: Settings,
    files: list[Path],
    out: Path,
    options: dict[str, Any],
    *,
    timeout: float | None,
    quiet: bool,
    reprocess: bool = False,
    progress_mode: ProgressMode = "auto",
) -> int:
    """Process ``files`` into ``out``; the exit code: 0 when every file is done, else 1."""
    report: Report = (
        JsonLinesReport()
        if progress_mode == "jsonl"
        else HumanReport(quiet=quiet, terminal=sys.stderr.isatty())
    )
    try:
        return _run_process(settings, files, out, options, timeout, report, reprocess)
    except KeyboardInterrupt:
        leave_interrupted()


def leave_interrupted() -> NoReturn:
    """Ctrl-C: one line, exit 130, at once.

    OCR engines run native threads (onnxruntime) under the embedded run; an
    orderly interpreter shutdown beneath them aborts the process ("terminate
    called without an active exception", exit 134). Leaving at once loses
    nothing: every finished page is committed, and the next run takes over the
    pages this one held (it holds the database's lock file, so it knows this
    run is gone).
    """
    print(
        "\ndocintel: interrupted; finished pages are kept. Run the same command again to resume.",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _run_process(
    settings: Settings,
    files: list[Path],
    out: Path,
    options: dict[str, Any],
    timeout: float | None,
    report: Report,
    reprocess: bool,
) -> int:
    out.mkdir(parents=True, exist_ok=True)
    # One bad path must not cost the others their run: it is reported and skipped.
    not_read = {path: problem for path in files if (problem := _read_problem(path))}
    for path, problem in not_read.items():
        report.say(f"docintel: {path}: {problem}")
    clock = _Clock()
    submitted: dict[Path, uuid.UUID] = {}
    errors: list[BaseException] = []

    def submit_all() -> None:
        try:
            for path in (p for p in files if p not in not_read):
                clock.start(path)
                try:
                    accepted = accept(settings, path, options=options, reprocess=reprocess)
                except OSError as error:
                    if not _about(error, path):
                        raise
                    not_read[path] = _problem(error)  # gone or locked since the check
                    report.say(f"docintel: {path}: {not_read[path]}")
                    continue
                result = accepted.result
                _explain_reuse(report, path, result, options, reprocess)
                submitted[path] = result.document_id  # shown in progress from now on
                start(settings, accepted)
                if settings.embedded:  # the work ran inside start()
                    clock.finish(result.document_id)
        except BaseException as error:  # surfaced by the main thread below
            errors.append(error)

    # Embedded mode does the work inside start(); run it beside the progress display.
    worker = threading.Thread(target=submit_all, name="docintel-submit", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.5)
        if submitted:
            _show(report, progress(settings, submitted.values()), submitted, len(files))
    if errors:
        if isinstance(errors[0], QueueUnavailable | SecretKeyError):
            report.say(f"docintel: {errors[0]}")
            return 1
        raise errors[0]
    watch = ConsumerWatch(settings)
    outage = _DatabaseOutage(report)

    def on_progress(state: list[Progress]) -> None:
        outage.over()
        clock.finish_terminal(state)
        _show(report, state, submitted, len(files))
        watch.check(state, report)

    final = wait(
        settings,
        submitted.values(),
        timeout_s=timeout,
        on_progress=on_progress,
        on_database_error=outage.noticed,
    )
    terminal = {p.document_id for p in final if p.terminal}
    names = output_names([p for p in files if p in submitted])
    results = [
        FileResult(path, NOT_READ, error=not_read[path])
        if path in not_read
        else _settle(settings, report, path, submitted[path], out / names[path], terminal, clock)
        for path in files
    ]
    report.finish(results)
    return 0 if all(r.status == DocumentStatus.DONE for r in results) else 1


def _settle(
    settings: Settings,
    report: Report,
    path: Path,
    doc_id: uuid.UUID,
    out_stem: Path,
    terminal: set[uuid.UUID],
    clock: _Clock,
) -> FileResult:
    """Write one file's outputs and say what went wrong with it, if anything."""
    written = write_document(settings, doc_id, out_stem.parent, out_stem.name)
    error = None
    if written.status != DocumentStatus.DONE:
        error = (written.error or "no error recorded") if doc_id in terminal else "timed out"
        report.say(f"docintel: {path}: {written.status.value}: {error}")
    if written.no_text:
        report.say(f"docintel: warning: {path}: {written.no_text}")
    return FileResult(
        path,
        written.status.value,
        written.pages,
        clock.seconds(path, doc_id),
        written.json_path,
        doc_id,
        error,
        (written.no_text,) if written.no_text else (),
    )


def _show(
    report: Report, state: list[Progress], submitted: dict[Path, uuid.UUID], files: int
) -> None:
    report.progress(state, {doc_id: path for path, doc_id in submitted.items()}, files)


def _read_problem(path: Path) -> str | None:
    """Why ``path`` cannot be processed, in a few words; None when it can be read."""
    if path.exists() and not path.is_file():
        return "not a file" if not path.is_dir() else "is a folder, not a file"
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:
        return _problem(error)
    return None


def _problem(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file"
    return f"cannot be read: {error.strerror or error}"


def _about(error: OSError, path: Path) -> bool:
    """Whether ``error`` is about reading ``path`` (not, say, the blob store's disk)."""
    return error.filename is not None and Path(error.filename) == path


class _Clock:
    """Seconds per file: from its submission to the first time it is seen finished."""

    def __init__(self) -> None:
        self._started: dict[Path, float] = {}
        self._finished: dict[uuid.UUID, float] = {}

    def start(self, path: Path) -> None:
        self._started[path] = time.monotonic()

    def finish(self, doc_id: uuid.UUID) -> None:
        self._finished.setdefault(doc_id, time.monotonic())

    def finish_terminal(self, state: list[Progress]) -> None:
        for doc in state:
            if doc.terminal:
                self.finish(doc.document_id)

    def seconds(self, path: Path, doc_id: uuid.UUID) -> float:
        return self._finished.get(doc_id, time.monotonic()) - self._started[path]


def _explain_reuse(
    report: Report, path: Path, result: IngestResult, options: dict[str, Any], reprocess: bool
) -> None:
    """Say so when earlier results stand in for what this command asked for."""
    earlier = result.earlier_options
    if earlier is None:
        return
    if reprocess:
        report.say(
            f"docintel: {path}: not reprocessed: document {result.document_id} is still "
            "being processed; run again once it has finished"
        )
    elif asks_for_other_options(earlier, options):
        report.say(
            f"docintel: {path}: same content as document {result.document_id}, processed "
            f"with {describe_options(earlier)}; reusing its results "
            "(--reprocess runs it again with these options)"
        )


class _DatabaseOutage:
    """Says once that the database went away while waiting, and once that it is back."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.away = False

    def noticed(self, error: Exception) -> None:
        if not self.away:
            self.report.say(
                f"docintel: warning: the database is unreachable ({type(error).__name__}); "
                "waiting for it (the work is kept)"
            )
        self.away = True

    def over(self) -> None:
        if self.away:
            self.report.say("docintel: the database is back")
        self.away = False
