"""What ``docintel process`` tells its user while it runs and when it ends.

Humans get a self-overwriting progress line on a terminal and a one-line summary
per file at the end, both on stderr (``--quiet`` silences both). Scripts ask for
``--progress jsonl``: one JSON object per line on stdout, progress events while
it runs and a result per file at the end. Errors and warnings are lines on
stderr in every mode, so a script that only checks the exit code still sees why.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the command line imports this module before it needs the database
    from docintel.service import Progress

# auto: a progress line when stderr is a terminal, then a summary; jsonl: JSON lines on stdout
ProgressMode = Literal["auto", "jsonl"]


NOT_READ = "not_read"  # the status of a file that could not be read, so was never submitted


@dataclass(frozen=True, slots=True)
class FileResult:
    path: Path
    status: str  # the document's status, or NOT_READ
    pages: int = 0
    seconds: float = 0.0
    output: Path | None = None
    document_id: uuid.UUID | None = None
    error: str | None = None
    warnings: tuple[str, ...] = field(default=())


class Report:
    """Lines on stderr, safe from several threads; the base of both modes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        """An error, a warning or a note: a line of its own on stderr."""
        with self._lock:
            self._clear_line()
            print(line, file=sys.stderr, flush=True)

    def progress(self, state: list[Progress], paths: Mapping[uuid.UUID, Path], files: int) -> None:
        """The state of the documents submitted so far, out of ``files`` given."""

    def finish(self, results: list[FileResult]) -> None:
        """Every file's outcome, once all are settled."""
        with self._lock:
            self._clear_line()

    def _clear_line(self) -> None:
        """End a progress line in place, so that the next output starts a line of its own."""


class HumanReport(Report):
    BAR_WIDTH = 20

    def __init__(self, *, quiet: bool, terminal: bool) -> None:
        super().__init__()
        self.quiet = quiet
        self.live = terminal and not quiet
        self._line = ""

    def progress(self, state: list[Progress], paths: Mapping[uuid.UUID, Path], files: int) -> None:
        if not self.live:
            return
        with self._lock:
            line = progress_line(state, files, self.BAR_WIDTH)
            if line != self._line:
                sys.stderr.write("\r" + line.ljust(len(self._line)))
                sys.stderr.flush()
                self._line = line

    def finish(self, results: list[FileResult]) -> None:
        super().finish(results)
        if self.quiet:
            return
        for result in results:
            print(summary_line(result), file=sys.stderr)
        sys.stderr.flush()

    def _clear_line(self) -> None:
        if self._line:
            sys.stderr.write("\n")
            self._line = ""


class JsonLinesReport(Report):
    def __init__(self) -> None:
        super().__init__()
        self._sent: dict[uuid.UUID, Progress] = {}

    def progress(self, state: list[Progress], paths: Mapping[uuid.UUID, Path], files: int) -> None:
        with self._lock:
            for doc in state:
                if self._sent.get(doc.document_id) == doc:
                    continue  # one event per change, not one per poll
                self._sent[doc.document_id] = doc
                _emit(
                    {
                        "event": "progress",
                        "file": str(paths[doc.document_id]),
                        "document_id": str(doc.document_id),
                        "status": str(doc.status),
                        "stage": doc.stage,
                        "pages_done": doc.pages_finished,
                        "pages_total": doc.pages_total,
                    }
                )

    def finish(self, results: list[FileResult]) -> None:
        super().finish(results)
        for result in results:
            _emit(
                {
                    "event": "result",
                    "file": str(result.path),
                    "document_id": str(result.document_id) if result.document_id else None,
                    "status": result.status,
                    "pages": result.pages,
                    "seconds": round(result.seconds, 3),
                    "output": str(result.output) if result.output else None,
                    "error": result.error,
                    "warnings": list(result.warnings),
                }
            )


def progress_line(state: list[Progress], files: int, bar_width: int) -> str:
    """``documents 1/3 · pages 12/40 [######--------------] · ocr``"""
    pages = sum(p.pages_finished for p in state)
    total = sum(p.pages_total for p in state)
    filled = bar_width * pages // total if total else 0
    bar = "#" * filled + "-" * (bar_width - filled)
    line = f"documents {sum(p.terminal for p in state)}/{files} · pages {pages}/{total} [{bar}]"
    stages = dict.fromkeys(p.stage for p in state if not p.terminal)  # ordered, no repeats
    return f"{line} · {', '.join(stages)}" if stages else line


def summary_line(result: FileResult) -> str:
    """``report.pdf: done, 3 pages, 1.2 s -> out/report.json``"""
    if result.status == NOT_READ:
        return f"{result.path}: not read"
    pages = f"{result.pages} page" + ("" if result.pages == 1 else "s")
    return f"{result.path}: {result.status}, {pages}, {result.seconds:.1f} s -> {result.output}"


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()
