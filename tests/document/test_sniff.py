"""Media-type sniffing: decided by the bytes, never by the file name."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from docintel.document.sniff import SUPPORTED_MEDIA_TYPES, sniff_media_type
from docintel.errors import DocumentError, ErrorCode


def _pil_bytes(fmt: str, mode: str = "RGB", **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (8, 6), "white" if mode != "1" else 1).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


ACCEPTED = [
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "application/pdf"),
    ("pdf after junk", b"\xef\xbb\xbf" + b" " * 500 + b"%PDF-1.4\n", "application/pdf"),
    ("png", _pil_bytes("PNG"), "image/png"),
    ("jpeg", _pil_bytes("JPEG"), "image/jpeg"),
    ("tiff little-endian", _pil_bytes("TIFF"), "image/tiff"),
    ("tiff big-endian", b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 16, "image/tiff"),
    ("bigtiff", b"II+\x00\x08\x00\x00\x00" + b"\x00" * 16, "image/tiff"),
    ("webp", _pil_bytes("WEBP"), "image/webp"),
    ("gif", _pil_bytes("GIF", "P"), "image/gif"),
    ("gif87a", b"GIF87a" + b"\x00" * 20, "image/gif"),
    ("bmp", _pil_bytes("BMP"), "image/bmp"),
    ("jp2", _pil_bytes("JPEG2000"), "image/jp2"),
    ("j2k codestream", _pil_bytes("JPEG2000", no_jp2=True), "image/jp2"),
    ("pbm plain", b"P1\n2 2\n0 1\n1 0\n", "image/x-portable-anymap"),
    ("pgm plain", b"P2 2 1 255 0 255", "image/x-portable-anymap"),
    ("ppm plain", b"P3\t1 1\n255\n0 0 0\n", "image/x-portable-anymap"),
    ("pbm", _pil_bytes("PPM", "1"), "image/x-portable-anymap"),
    ("pgm", _pil_bytes("PPM", "L"), "image/x-portable-anymap"),
    ("ppm", _pil_bytes("PPM"), "image/x-portable-anymap"),
]

REFUSED = [
    ("zip / docx", _zip_bytes(), "ZIP archive"),
    ("html", b"<!DOCTYPE html>\n<html><body>Invoice</body></html>", "HTML page"),
    ("html, indented", b"\n\n   <html lang='en'><head>", "HTML page"),
    ("text named .pdf", b"This is not a valid PDF file at all.", "plain text"),
    ("text starting with BM", b"BMW invoice 2024, total 100 EUR\n", "plain text"),
    ("text starting with P1", b"P1-P6 are netpbm magic numbers", "plain text"),
    ("xml", b'<?xml version="1.0"?><root/>', "XML document"),
    ("svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG image"),
    ("json", b'{"pages": []}', "JSON"),
    ("ole2 / doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "legacy Microsoft Office"),
    ("rtf", b"{\\rtf1\\ansi hello}", "RTF document"),
    ("postscript", b"%!PS-Adobe-3.0\n", "PostScript"),
    ("gzip", b"\x1f\x8b\x08\x00" + b"\x00" * 20, "gzip archive"),
    ("wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "RIFF file"),
    ("heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "HEIC image"),
    ("elf", b"\x7fELF\x02\x01\x01" + b"\x00" * 20, "executable"),
    ("random binary", bytes(range(256)) * 4, "unknown binary data"),
    ("pdf header too late", b" " * 1024 + b"%PDF-1.4\n", "plain text"),
    ("bmp header without dib", b"BM" + b"\x00" * 30, "unknown binary data"),
]


@pytest.mark.parametrize(
    ("head", "expected"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED]
)
def test_accepted_types(head: bytes, expected: str) -> None:
    assert sniff_media_type(head) == expected


@pytest.mark.parametrize(("head", "guess"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_types_say_what_the_file_looks_like(head: bytes, guess: str) -> None:
    with pytest.raises(DocumentError) as caught:
        sniff_media_type(head)
    assert caught.value.code == ErrorCode.UNSUPPORTED_TYPE
    assert guess in caught.value.message
    assert "docintel accepts PDF, PNG, JPEG, TIFF, WebP, GIF, BMP, JPEG 2000 and PNM" in (
        caught.value.message
    )


def test_empty_file() -> None:
    with pytest.raises(DocumentError) as caught:
        sniff_media_type(b"")
    assert caught.value.code == ErrorCode.EMPTY_FILE


def test_only_the_head_is_needed() -> None:
    """The ingest stage reads 4 KiB; a large file's head alone decides."""
    png = _pil_bytes("PNG")
    assert sniff_media_type(png[:16]) == "image/png"
    assert sniff_media_type(b"%PDF-") == "application/pdf"


def test_bmp_needs_a_known_info_header() -> None:
    head = b"BM" + struct.pack("<IHHI", 100, 0, 0, 54) + struct.pack("<I", 40)
    assert sniff_media_type(head) == "image/bmp"


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=2048))
def test_any_bytes_give_a_supported_type_or_a_clear_error(head: bytes) -> None:
    try:
        assert sniff_media_type(head) in SUPPORTED_MEDIA_TYPES
    except DocumentError as error:
        assert error.code == ErrorCode.UNSUPPORTED_TYPE
        assert "looks like" in error.message
