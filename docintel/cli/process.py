"""``docintel process``: submit files, show progress, write the contract JSON and Markdown."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

from docintel.db import session_scope
from docintel.models import DocumentStatus
from docintel.output import document_json, document_markdown, load_document
from docintel.pipeline.ingest import IngestResult
from docintel.service import Progress, QueueUnavailable, submit, wait
from docintel.settings import Settings

log = logging.getLogger(__name__)


def run_process(
    settings: Settings,
    files: list[Path],
    out: Path,
    options: dict[str, Any],
    *,
    timeout: float | None,
    quiet: bool,
    reprocess: bool = False,
) -> int:
    try:
        return _run_process(settings, files, out, options, timeout, quiet, reprocess)
    except KeyboardInterrupt:
        _leave_interrupted()


def _leave_interrupted() -> NoReturn:
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
    quiet: bool,
    reprocess: bool,
) -> int:
    out.mkdir(parents=True, exist_ok=True)

    submitted: dict[Path, uuid.UUID] = {}
    errors: list[BaseException] = []

    def submit_all() -> None:
        try:
            for path in files:
                result = submit(settings, path, options=options, reprocess=reprocess)
                submitted[path] = result.document_id
                _explain_reuse(path, result, options, reprocess)
        except BaseException as error:  # surfaced by the main thread below
            errors.append(error)

    # Embedded mode does the work inside submit(); run it beside the progress display.
    worker = threading.Thread(target=submit_all, name="docintel-submit", daemon=True)
    worker.start()
    display = _ProgressLine(enabled=not quiet and sys.stderr.isatty())
    while worker.is_alive():
        worker.join(0.5)
        if submitted:
            from docintel.service import progress

            display.show(progress(settings, submitted.values()), len(files))
    if errors:
        if isinstance(errors[0], QueueUnavailable):
            display.close()
            print(f"docintel: {errors[0]}", file=sys.stderr)
            return 1
        raise errors[0]
    watch = _ConsumerWatch(settings)

    def on_progress(state: list[Progress]) -> None:
        display.show(state, len(files))
        watch.check(state, display)

    final = wait(settings, submitted.values(), timeout_s=timeout, on_progress=on_progress)
    display.close()

    by_id = {p.document_id: p for p in final}
    exit_code = 0
    names = _output_names(files)
    for path, doc_id in submitted.items():
        status = _write_outputs(settings, doc_id, out, names[path])
        if status != DocumentStatus.DONE:
            exit_code = 1
            state = by_id.get(doc_id)
            detail = _error_line(settings, doc_id) if state and state.terminal else "timed out"
            print(f"docintel: {path}: {status.value}: {detail}", file=sys.stderr)
    return exit_code


def _explain_reuse(
    path: Path, result: IngestResult, options: dict[str, Any], reprocess: bool
) -> None:
    """Say so when earlier results stand in for what this command asked for."""
    earlier = result.earlier_options
    if earlier is None:
        return
    if reprocess:
        print(
            f"docintel: {path}: not reprocessed: document {result.document_id} is still "
            "being processed; run again once it has finished",
            file=sys.stderr,
        )
    elif options and earlier != options:
        print(
            f"docintel: {path}: same content as document {result.document_id}, processed "
            f"with {json.dumps(earlier, sort_keys=True)}; reusing its results "
            "(--reprocess runs it again with these options)",
            file=sys.stderr,
        )


def _output_names(files: list[Path]) -> dict[Path, str]:
    """<name> for each input; inputs with the same stem get a numeric suffix."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in files:
        name, n = path.stem, 1
        while name in used:
            n += 1
            name = f"{path.stem}-{n}"
        used.add(name)
        names[path] = name
    return names


def _write_outputs(settings: Settings, doc_id: uuid.UUID, out: Path, name: str) -> DocumentStatus:
    with session_scope(settings.database_url) as session:
        doc = load_document(session, doc_id)
        assert doc is not None
        (out / f"{name}.json").write_text(
            json.dumps(document_json(doc), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (out / f"{name}.md").write_text(document_markdown(doc), encoding="utf-8")
        return doc.status


def _error_line(settings: Settings, doc_id: uuid.UUID) -> str:
    with session_scope(settings.database_url) as session:
        doc = load_document(session, doc_id)
        assert doc is not None
        return f"{doc.error_code}: {doc.error_message}" if doc.error_code else "no error recorded"


class _ProgressLine:
    """One self-overwriting status line on a terminal; silent when piped."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = ""

    def show(self, state: list[Progress], files: int) -> None:
        if not self.enabled:
            return
        done_docs = sum(p.terminal for p in state)
        pages = sum(p.pages_finished for p in state)
        total = sum(p.pages_total for p in state)
        line = f"documents {done_docs}/{files} · pages {pages}/{total}"
        if line != self._last:
            sys.stderr.write("\r" + line.ljust(len(self._last)))
            sys.stderr.flush()
            self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")
            self._last = ""  # the next line starts afresh; a second close prints nothing


class _ConsumerWatch:
    """Says, within seconds, when no live worker consumes a queue this run needs, and
    again when one does. Otherwise a forgotten ``docintel worker`` looks like a slow one.

    ``cpu`` is always needed; the OCR engine's queue once a page waits for OCR.
    """

    GRACE_S = 3.0  # a worker started together with this command needs a moment to report in
    EVERY_S = 2.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.monotonic()
        self.next_check = self.started + self.GRACE_S
        self.missing: set[str] = set()

    def check(self, state: list[Progress], display: _ProgressLine) -> None:
        now = time.monotonic()
        if self.settings.embedded or now < self.next_check or all(p.terminal for p in state):
            return
        self.next_check = now + self.EVERY_S
        try:
            missing = {q for q in self._needed(state) if self._consumers(q) == 0}
        except Exception as error:  # a hint must never end the wait
            log.debug("could not check for workers: %s", error)
            return
        for queue in sorted(missing - self.missing):
            display.close()
            print(
                f"docintel: warning: no worker consumes the '{queue}' queue (none reported "
                f"in recently); start one with `docintel worker --queues {queue}`. Waiting.",
                file=sys.stderr,
            )
        for queue in sorted(self.missing - missing):
            display.close()
            print(f"docintel: a worker now consumes the '{queue}' queue", file=sys.stderr)
        self.missing = missing

    def _needed(self, state: list[Progress]) -> set[str]:
        from docintel.pipeline.page import ocr_queue

        queue = ocr_queue(self.settings.ocr_engine)
        if queue == "cpu" or not _waiting_for_ocr(self.settings, [p.document_id for p in state]):
            return {"cpu"}
        return {"cpu", queue}

    def _consumers(self, queue: str) -> int:
        from docintel.queue.maintenance import live_consumers

        return live_consumers(self.settings, queue)


def _waiting_for_ocr(settings: Settings, ids: list[uuid.UUID]) -> bool:
    from sqlalchemy import select

    from docintel.models import Page, PageStatus

    with session_scope(settings.database_url) as session:
        query = select(Page.id).where(Page.document_id.in_(ids), Page.status == PageStatus.OCR)
        return session.scalar(query.limit(1)) is not None
