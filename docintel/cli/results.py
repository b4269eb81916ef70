"""``docintel process``, after the work: the files it writes and what it says about each."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docintel.db import session_scope
from docintel.models import Document, DocumentStatus, PageStatus
from docintel.output import document_json, document_markdown, load_document
from docintel.passwords import has_password, public_options
from docintel.settings import Settings

PDF = "application/pdf"


@dataclass(frozen=True, slots=True)
class Written:
    """What was written for one document, and what its user should hear about it."""

    status: DocumentStatus
    pages: int
    json_path: Path
    error: str | None  # "code: message" of a document that did not finish
    no_text: str | None  # why a finished document has pages without text


def write_document(settings: Settings, document_id: uuid.UUID, out: Path, name: str) -> Written:
    """Write ``<name>.json`` and ``<name>.md`` for the document into ``out``."""
    with session_scope(settings.database_url) as session:
        doc = load_document(session, document_id)
        assert doc is not None
        json_path = out / f"{name}.json"
        json_path.write_text(
            json.dumps(document_json(doc), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (out / f"{name}.md").write_text(document_markdown(doc), encoding="utf-8")
        error = f"{doc.error_code}: {doc.error_message}" if doc.error_code else None
        return Written(doc.status, doc.page_count or 0, json_path, error, _no_text(settings, doc))


def _no_text(settings: Settings, doc: Document) -> str | None:
    """A finished document that has pages with no text only because OCR was ruled out.

    ``--ocr-mode never`` trusts the text layer alone: an image, or a scanned PDF,
    comes out ``done`` with empty text. Said in words, it is not mistaken for a
    blank document or a failed OCR.
    """
    if (doc.options.get("ocr_mode") or settings.ocr_mode) != "never":
        return None
    empty = [
        page.number
        for page in doc.pages
        if page.status == PageStatus.DONE and not (page.text or "").strip()
    ]
    if not empty:
        return None
    if doc.media_type != PDF:
        return "no text: it is an image, and --ocr-mode never skips OCR"
    if len(empty) == len(doc.pages):
        return "no text: the PDF has no text layer, and --ocr-mode never skips OCR"
    listed = ", ".join(map(str, empty))
    return f"no text on page(s) {listed}: no text layer there, and --ocr-mode never skips OCR"


def output_names(files: list[Path]) -> dict[Path, str]:
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


def chosen_options(**values: Any) -> dict[str, Any]:
    """The document options a command was given: those not left at None (the default)."""
    return {name: value for name, value in values.items() if value is not None}


def describe_options(options: dict[str, Any]) -> str:
    """Options in the command line's words: ``--ocr-mode never, --dpi 150, a password``."""
    shown = public_options(options)
    words = []
    if "ocr_mode" in shown:
        words.append(f"--ocr-mode {shown.pop('ocr_mode')}")
    if "dpi" in shown:
        words.append(f"--dpi {shown.pop('dpi')}")
    if "tables" in shown:
        words.append("--tables" if shown.pop("tables") else "--no-tables")
    for option in ("ocr_engine", "table_engine", "chart_engine"):
        if option in shown:
            words.append(f"--{option.replace('_', '-')} {shown.pop(option)}")
    words += [f"{key}={value}" for key, value in sorted(shown.items())]  # set through the API
    if has_password(options):
        words.append("a password")
    return ", ".join(words) if words else "the default options"


def asks_for_other_options(earlier: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether this command chose options that the earlier run did not use.

    A password is left aside: it changes nothing for a file that opens without one.
    """
    chosen = public_options(wanted)
    return bool(chosen) and chosen != public_options(earlier)
