"""Whatever a mainstream reader opens without a password, docintel reads; nothing else.

PDFium (docintel's reader) refuses an AES-256 revision 6 file whose owner
password is empty, which poppler, pypdf and qpdf open as its owner without
asking; and after a refused encrypted file it reports the next unreadable
file, whatever its fault, as password-protected too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pikepdf
import pytest
from pypdf import PasswordType, PdfReader

from docintel.document.pdf_open import open_pdf
from docintel.document.render import render_page
from docintel.document.sources import open_source
from docintel.document.textlayer import extract_text_lines
from docintel.errors import DocumentError, ErrorCode
from tests.fixtures import documents as fx
from tests.hostile.files import make_deeply_nested_pdf

PDF = "application/pdf"
TEXT = "Opened by its empty owner password"


def _empty_owner_password(path: Path, user: str = "user-only") -> Path:
    """AES-256, revision 6, written by qpdf: a user password and an empty owner one."""
    plain = fx.make_text_pdf(path.with_suffix(".plain.pdf"), [TEXT])
    with pikepdf.open(plain) as pdf:
        pdf.save(path, encryption=pikepdf.Encryption(owner="", user=user, R=6))
    return path


def test_mainstream_readers_open_an_empty_owner_password_without_asking(tmp_path: Path) -> None:
    """The premise: poppler and pypdf need no password for this file."""
    path = _empty_owner_password(tmp_path / "r6.pdf")
    shown = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True)
    assert shown.returncode == 0 and TEXT in shown.stdout
    assert PdfReader(path).decrypt("") == PasswordType.OWNER_PASSWORD


@pytest.mark.parametrize("password", [None, "a wrong one"])
def test_docintel_reads_an_empty_owner_password_file(tmp_path: Path, password: str | None) -> None:
    path = _empty_owner_password(tmp_path / "r6.pdf")
    with open_source(
        path, PDF, password=password, max_pages=10, max_page_pixels=80_000_000, dpi=72
    ) as source:
        assert source.page_count == 1
    lines = extract_text_lines(path, 1, 72, password)
    assert [line.text for line in lines] == [TEXT]
    page = render_page(path, PDF, 1, 72, password=password, max_page_pixels=80_000_000)
    assert page.image.size == (612, 792)
    darkest, _ = page.image.convert("L").getextrema()
    assert isinstance(darkest, int) and darkest < 128  # the text is drawn


def test_a_real_user_password_is_still_required(tmp_path: Path) -> None:
    path = fx.make_encrypted_pdf(tmp_path / "aes.pdf", algorithm="AES-256")
    with pytest.raises(DocumentError) as refused:
        open_pdf(path)
    assert refused.value.code == ErrorCode.ENCRYPTED
    open_pdf(path, "userpass").close()


def test_a_damaged_file_after_an_encrypted_one_is_not_called_encrypted(tmp_path: Path) -> None:
    encrypted = fx.make_encrypted_pdf(tmp_path / "rc4.pdf")
    nested = make_deeply_nested_pdf(tmp_path / "nested.pdf")
    for path, code in ((encrypted, ErrorCode.ENCRYPTED), (nested, ErrorCode.CORRUPT)):
        with pytest.raises(DocumentError) as refused:
            open_pdf(path)
        assert refused.value.code == code, path.name
