"""Opening a PDF with PDFium, and saying precisely why one cannot be opened.

PDFium reads lazily and is the one library that opens every PDF here, but it is
not thread-safe (``PDFIUM_LOCK``), its error codes can be stale, and it refuses
some encrypted files that every mainstream reader opens without a password.
This module covers those three; ``docintel.document.sources`` builds on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import threading
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from docintel.errors import DocumentError, ErrorCode

# Only small files are re-read with pypdf to tell "zero pages" from "corrupt":
# pypdf reads the whole file into memory, and a real zero-page PDF is tiny.
_PROBE_MAX_BYTES = 16 * 1024 * 1024

_CHUNK_BYTES = 1 << 20

# The largest PDF decrypted by pypdf where PDFium refuses it (see _decrypted_copy).
_DECRYPT_MAX_BYTES = 64 * 1024 * 1024

ENCRYPTED_MESSAGE = "the PDF is password-protected; submit it with its password"

# PDFium is not thread-safe: two threads inside it at once crash the process
# (pypdfium2 documents this). A worker process runs one task at a time, but the
# embedded mode and any threaded caller (submits from several threads, a threaded
# server) can process pages on several threads. Every use of PDFium holds this
# lock, from opening a document until it is closed. Reentrant, so a function
# holding it may call another that takes it.
PDFIUM_LOCK = threading.RLock()

# pypdf (the decrypted copy, the page-count probe) logs every repair it makes ("EOF
# marker not found"); with no logging configured those land on stderr, where
# `docintel process` promises one line per failed file. Our verdict says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def open_pdf(path: Path, password: str | None = None) -> pdfium.PdfDocument:
    """Open a PDF with PDFium, turning every way it can be unreadable into a ``DocumentError``.

    PDFium reads the file lazily (cross-reference table and page tree only), so
    this is cheap even for very large documents. A PDF encrypted with an empty
    user password opens without one, as in any viewer; so does one with an
    empty owner password, which PDFium alone refuses (``_decrypted_copy``).
    """
    if not path.is_file():
        raise FileNotFoundError(path)  # not the input's fault: let the queue retry
    try:
        return pdfium.PdfDocument(path, password=password)
    except pdfium.PdfiumError as error:
        refusal = error
    if refusal.err_code == pdfium_c.FPDF_ERR_PASSWORD:
        decrypted = _decrypted_copy(path, password)
        if decrypted is not None:
            with contextlib.suppress(pdfium.PdfiumError):  # then PDFium's first verdict stands
                return pdfium.PdfDocument(decrypted)
    raise _pdf_open_error(path, refusal.err_code, password) from refusal


def _decrypted_copy(path: Path, password: str | None) -> bytes | None:
    """The PDF decrypted by pypdf, when pypdf opens it with ``password`` (or none).

    PDFium refuses an AES-256 (revision 6) file whose owner password is empty
    unless given the user password, while poppler, pypdf and qpdf open it with
    no password at all, as the owner. Such a file protects nothing, and a user
    cannot know a password nobody asks them for, so it is read as any viewer
    reads it. The copy is kept in memory only; small files only, as pypdf
    holds the whole document in memory.
    """
    try:
        stat = path.stat()
        if stat.st_size > _DECRYPT_MAX_BYTES:
            return None
        # A wrong password does not stand in the way of a file that needs none,
        # as for an unencrypted PDF given one.
        for candidate in dict.fromkeys((password or "", "")):
            key = (str(path), stat.st_size, stat.st_mtime_ns, _digest(candidate))
            with _decrypted_lock:
                if key in _decrypted:
                    copy = _decrypted[key]
                else:
                    copy = _decrypted[key] = _decrypt_with_pypdf(path, candidate)
                    while len(_decrypted) > 1:  # the last document's only
                        _decrypted.pop(next(iter(_decrypted)))
            if copy is not None:
                return copy
        return None
    except Exception:  # pypdf cannot open it either: PDFium's verdict stands
        return None


# One document's pages are opened one after another (split, render, text layer):
# the last decrypted copy is kept so each page does not decrypt the file again. Its
# key holds a digest of the password, never the password.
_decrypted: dict[tuple[str, int, int, str], bytes | None] = {}
_decrypted_lock = threading.Lock()


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def _decrypt_with_pypdf(path: Path, password: str) -> bytes | None:
    from pypdf import PasswordType, PdfReader, PdfWriter

    reader = PdfReader(path, strict=False)
    if not reader.is_encrypted or reader.decrypt(password) == PasswordType.NOT_DECRYPTED:
        return None
    out = io.BytesIO()
    PdfWriter(clone_from=reader).write(out)  # written without encryption
    return out.getvalue()


def _pdf_open_error(path: Path, code: int | None, password: str | None) -> Exception:
    if code == pdfium_c.FPDF_ERR_FILE:
        return OSError(f"PDFium could not read {path}")
    # PDFium refuses documents with an empty page tree, sometimes even calling
    # them password-protected; pypdf tells those apart from real damage.
    probe = _probe_pages(path)
    if probe == 0:
        return DocumentError(ErrorCode.ZERO_PAGES, "the document has no pages")
    if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY) and not _names_encryption(
        path
    ):
        # PDFium leaves its last error as it was when a load fails in a way that
        # sets none (a page tree nested 100,000 deep): in a worker, the code of
        # the encrypted file before would call this one password-protected.
        code = pdfium_c.FPDF_ERR_FORMAT
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        if password is None:
            return DocumentError(ErrorCode.ENCRYPTED, ENCRYPTED_MESSAGE)
        return DocumentError(ErrorCode.ENCRYPTED, "the password given for the PDF is wrong")
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return DocumentError(
            ErrorCode.ENCRYPTED,
            "the PDF uses a security handler docintel cannot open (certificate or DRM encryption)",
        )
    return DocumentError(ErrorCode.CORRUPT, "the PDF is damaged or truncated and cannot be read")


def _names_encryption(path: Path) -> bool:
    """Whether the file has an /Encrypt key anywhere (trailer or cross-reference stream).

    Read in chunks that overlap by the key's length, so one split across two
    chunks is still found; only called for a file PDFium refused.
    """
    key = b"/Encrypt"
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            if key in tail + chunk:
                return True
            tail = chunk[-len(key) :]
    return False


def _probe_pages(path: Path) -> int | None:
    """Page count according to pypdf for a small unencrypted file, else None."""
    try:
        if path.stat().st_size > _PROBE_MAX_BYTES:
            return None
        from pypdf import PdfReader

        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            return None
        return len(reader.pages)
    except Exception:  # any failure only means "no second opinion"; PDFium's verdict stands
        return None
