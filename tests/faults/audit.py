"""The documents a fault test runs, and the count of what came out of them.

Born-digital pages: their text is known exactly, so a page whose lines were
written twice, or not at all, shows in the counts of line rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from docintel.db import session_scope
from docintel.models import Line, Page, PageStatus
from docintel.service import progress
from docintel.settings import Settings
from tests.fixtures import documents as fx


def make_batch(folder: Path, documents: int, pages: int) -> dict[Path, list[str]]:
    """Text PDFs of ``pages`` pages each, unique to this run (no deduplication)."""
    run = uuid.uuid4().hex[:8]
    batch = {}
    for d in range(1, documents + 1):
        texts = [
            f"Fault run {run} document {d} page {p}\nsecond line {p}" for p in range(1, pages + 1)
        ]
        batch[fx.make_text_pdf(folder / f"doc-{d}.pdf", texts)] = texts
    return batch


@dataclass
class Tally:
    """Pages expected / done with their text exactly once / with extra line rows /
    not done or with lines missing."""

    expected: int
    done: int
    duplicated: int
    lost: int

    def row(self, fault: str, recover_s: float) -> str:
        line = (
            f"FAULT {fault}: pages expected {self.expected} done {self.done} "
            f"duplicated {self.duplicated} lost {self.lost}; recovered {recover_s:.1f}s"
        )
        print(f"\n{line}")
        return line


def tally(settings: Settings, expected: dict[uuid.UUID, list[str]]) -> Tally:
    count = Tally(expected=sum(len(t) for t in expected.values()), done=0, duplicated=0, lost=0)
    with session_scope(settings.database_url) as session:
        for doc_id, texts in expected.items():
            pages = {
                p.number: p for p in session.scalars(select(Page).where(Page.document_id == doc_id))
            }
            for number, text in enumerate(texts, start=1):
                page = pages.get(number)
                wanted = len(text.splitlines())
                rows = 0
                if page is not None:
                    rows = session.scalar(select(func.count()).where(Line.page_id == page.id)) or 0
                if rows > wanted:
                    count.duplicated += 1
                if page is not None and page.status == PageStatus.DONE and page.text == text:
                    count.done += rows == wanted
                else:
                    count.lost += 1
    return count


def finished(settings: Settings, ids: list[uuid.UUID], pages: int = 0) -> Callable[[], bool]:
    """True once every document is terminal, or (``pages``) once that many pages are."""

    def check() -> bool:
        states = progress(settings, ids)
        if pages:
            return sum(s.pages_finished for s in states) >= pages
        return all(s.terminal for s in states)

    return check
