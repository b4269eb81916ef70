"""Permanent failures of bad input, each with a stable code users can filter on.

A ``DocumentError`` means the input itself is bad: it is recorded on the
document or page with its code and message and is never retried. Outages of
the database, broker or blob store are retried by the queue with backoff
(``docintel.queue.base.TRANSIENT_ERRORS``); any other unexpected error is
recorded as ``internal`` rather than retried blindly.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    UNSUPPORTED_TYPE = "unsupported_type"
    EMPTY_FILE = "empty_file"
    TOO_LARGE = "too_large"
    TOO_MANY_PAGES = "too_many_pages"
    ZERO_PAGES = "zero_pages"
    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    PAGE_TOO_LARGE = "page_too_large"
    RENDER_FAILED = "render_failed"
    OCR_FAILED = "ocr_failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


class DocumentError(Exception):
    """Bad input: not retried; recorded with ``code`` and a message a person can act on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def error_detail(error: BaseException, limit: int = 500) -> str:
    """``TypeName: message``, cut to ``limit`` characters, for an error kept on a row."""
    return f"{type(error).__name__}: {error}"[:limit]
