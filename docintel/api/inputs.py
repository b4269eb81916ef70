"""What clients send: upload options, file names, listing cursors; each checked or a 400."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from docintel.api.problems import Problem
from docintel.document.page_ranges import parse_page_range
from docintel.models import Document
from docintel.pipeline.routing import ENGINE_OPTIONS, engine_choice_error
from docintel.settings import get_settings
from docintel.webhooks.targets import TargetRefused, check_url, resolve

# password: encrypted by service.accept() before the document is stored
OPTION_FIELDS = {
    "ocr_mode",
    "dpi",
    "tables",
    "pages",
    "password",
    "webhook_url",
    *ENGINE_OPTIONS.values(),
}
OCR_MODES = ("auto", "always", "never")


def options_from_fields(fields: dict[str, str]) -> dict[str, Any]:
    """Per-document options: an ``options`` JSON field and/or single fields."""
    options: dict[str, Any] = {}
    if fields.get("options"):
        try:
            parsed = json.loads(fields["options"])
        except json.JSONDecodeError as error:
            raise Problem(400, "bad options", f"options is not JSON: {error.msg}") from None
        if not isinstance(parsed, dict):
            raise Problem(400, "bad options", "options must be a JSON object")
        options.update(parsed)
    for name in OPTION_FIELDS & fields.keys():
        value: Any = fields[name]
        if name == "dpi":
            if not value.isdigit():
                raise Problem(400, "bad options", "dpi must be a whole number")
            value = int(value)
        elif name == "tables":
            value = value.lower() not in ("false", "0", "no", "off")
        options[name] = value
    return checked_options(options)


def checked_options(options: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(options.get("tables", True), bool):
        raise Problem(400, "bad options", "tables must be true or false")
    if options.get("ocr_mode", "auto") not in OCR_MODES:
        raise Problem(400, "bad options", f"ocr_mode must be one of {', '.join(OCR_MODES)}")
    dpi = options.get("dpi")
    if dpi is not None and not (isinstance(dpi, int) and 36 <= dpi <= 1200):
        raise Problem(400, "bad options", "dpi must be a whole number from 36 to 1200")
    pages = options.get("pages")
    if pages is not None:
        try:
            parse_page_range(str(pages))
        except ValueError as error:
            raise Problem(400, "bad options", f"pages: {error}") from None
    if not isinstance(options.get("password", ""), str):
        raise Problem(400, "bad options", "password must be a string")
    if "webhook_url" in options:
        check_webhook_url(options["webhook_url"])
    if (engines := engine_choice_error(options)) is not None:
        raise Problem(400, "bad options", engines)
    unknown = set(options) - OPTION_FIELDS
    if unknown:
        raise Problem(400, "bad options", f"unknown options: {', '.join(sorted(unknown))}")
    return options


def check_webhook_url(url: Any) -> None:
    """The checks that need no DNS; ``webhook_target`` resolves the host."""
    if not isinstance(url, str):
        raise Problem(400, "bad options", "webhook_url must be a string")
    if not get_settings().webhook_secret.get_secret_value():
        raise Problem(
            400, "webhooks not enabled", "the server has no DOCINTEL_WEBHOOK_SECRET to sign them"
        )
    try:
        check_url(url)
    except TargetRefused as error:
        raise Problem(400, "bad webhook_url", str(error)) from None


def webhook_target(options: dict[str, Any]) -> None:
    """Refuse a ``webhook_url`` whose host resolves to an address it may not reach.

    Blocking (DNS): call it from a worker thread. Checked again at each attempt.
    """
    url = options.get("webhook_url")
    if url is None:
        return
    try:
        resolve(url, allow_private=get_settings().webhook_allow_private)
    except TargetRefused as error:
        raise Problem(400, "bad webhook_url", str(error)) from None
    except OSError as error:
        raise Problem(400, "bad webhook_url", f"cannot resolve its host: {error}") from None


def safe_name(filename: str | None) -> str:
    """The upload's base name only: a client's path (``../../etc/passwd.pdf``) is not ours."""
    name = Path((filename or "").replace("\\", "/")).name.strip()
    return name or "upload"


def cursor_after(doc: Document) -> str:
    raw = f"{doc.created_at.isoformat()}|{doc.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, last = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(last)
    except ValueError:
        raise Problem(400, "bad cursor", "pass back the next_cursor of a listing") from None
