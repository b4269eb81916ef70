"""Decide what a file is from its first bytes, never from its name.

Uploads arrive with names users typed and content types browsers guessed, so
the only trustworthy signal is the content. ``sniff_media_type`` accepts the
formats the rest of the pipeline can open and refuses everything else with a
message that says what the file seems to be, so a user who uploaded a Word
document or a web page knows what went wrong.
"""

from __future__ import annotations

import struct

from docintel.errors import DocumentError, ErrorCode

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
WEBP = "image/webp"
GIF = "image/gif"
BMP = "image/bmp"
JP2 = "image/jp2"
PNM = "image/x-portable-anymap"

IMAGE_MEDIA_TYPES = frozenset({PNG, JPEG, TIFF, WEBP, GIF, BMP, JP2, PNM})
SUPPORTED_MEDIA_TYPES = frozenset({PDF}) | IMAGE_MEDIA_TYPES

ACCEPTED = "docintel accepts PDF, PNG, JPEG, TIFF, WebP, GIF, BMP, JPEG 2000 and PNM"

# Readers such as Acrobat tolerate junk (a BOM, a mail header) before the PDF
# header as long as it starts within the first KiB; so do we.
_PDF_HEADER_WINDOW = 1024

# Sizes of the BMP info headers Pillow can read (core, v1-v5 and OS/2 variants).
# "BM" alone is too weak a signal: plenty of text files start with those letters.
_BMP_INFO_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

_PNM_WHITESPACE = b" \t\n\r\x0b\x0c"


def sniff_media_type(head: bytes) -> str:
    """The media type of a file whose first bytes are ``head`` (a few KiB is plenty).

    Raises ``DocumentError`` with ``EMPTY_FILE`` for no bytes, and
    ``UNSUPPORTED_TYPE`` for anything the pipeline cannot open.
    """
    if not head:
        raise DocumentError(ErrorCode.EMPTY_FILE, "the file is empty")
    media_type = _match(head)
    if media_type is None:
        raise DocumentError(
            ErrorCode.UNSUPPORTED_TYPE, f"the file looks like {describe(head)}; {ACCEPTED}"
        )
    return media_type


def _match(head: bytes) -> str | None:
    if b"%PDF-" in head[:_PDF_HEADER_WINDOW]:
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    # Classic TIFF (42) and BigTIFF (43), little- and big-endian.
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return TIFF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if _is_bmp(head):
        return BMP
    # JP2 signature box, and a raw JPEG 2000 codestream (SOC marker then SIZ marker).
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return JP2
    if (
        len(head) >= 3
        and head[0:1] == b"P"
        and head[1:2] in b"123456"
        and head[2] in _PNM_WHITESPACE
    ):
        return PNM
    return None


def _is_bmp(head: bytes) -> bool:
    if not head.startswith(b"BM") or len(head) < 18:
        return False
    (info_size,) = struct.unpack_from("<I", head, 14)
    return info_size in _BMP_INFO_SIZES


# (prefix, offset, description): checked in order; the first that matches wins.
_KNOWN_OTHERS: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "a ZIP archive (or an Office document such as DOCX, XLSX or PPTX)"),
    (b"PK\x05\x06", 0, "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "a legacy Microsoft Office file (DOC, XLS or PPT)"),
    (b"{\\rtf", 0, "an RTF document"),
    (b"%!PS", 0, "a PostScript file"),
    (b"\xc5\xd0\xd3\xc6", 0, "an EPS file"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"BZh", 0, "a bzip2 archive"),
    (b"\xfd7zXZ\x00", 0, "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"ustar", 257, "a tar archive"),
    (b"AT&TFORM", 0, "a DjVu document"),
    (b"8BPS", 0, "a Photoshop image"),
    (b"\x00\x00\x01\x00", 0, "an icon file"),
    (b"\x7fELF", 0, "an executable program"),
    (b"MZ", 0, "a Windows executable"),
    (b"\xff\x0a", 0, "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "a JPEG XL image"),
    (b"SQLite format 3\x00", 0, "an SQLite database"),
)

_ISO_BRANDS: dict[bytes, str] = {
    b"heic": "a HEIC image",
    b"heix": "a HEIC image",
    b"mif1": "a HEIF image",
    b"msf1": "a HEIF image",
    b"avif": "an AVIF image",
    b"avis": "an AVIF image",
    b"qt  ": "a QuickTime video",
}


def describe(head: bytes) -> str:
    """A short human guess at what ``head`` is, for error messages."""
    for prefix, offset, description in _KNOWN_OTHERS:
        if head[offset : offset + len(prefix)] == prefix:
            return description
    if head[4:8] == b"ftyp":
        return _ISO_BRANDS.get(head[8:12], "an MP4/ISO media file")
    if head[:4] == b"RIFF":
        return "a RIFF file (audio or video, not WebP)"
    text = _as_text(head)
    if text is None:
        return "unknown binary data"
    lowered = text.lstrip().lower()
    if (
        lowered.startswith(("<!doctype html", "<html", "<head", "<body"))
        or "<html" in lowered[:512]
    ):
        return "an HTML page"
    if "<svg" in lowered[:1024]:
        return "an SVG image"
    if lowered.startswith("<?xml"):
        return "an XML document"
    if lowered.startswith(("{", "[")):
        return "JSON or other structured text"
    if lowered.startswith(("from:", "received:", "mime-version:", "return-path:")):
        return "an e-mail message"
    return "plain text"


def _as_text(head: bytes) -> str | None:
    """``head`` decoded as text if it plausibly is text, else None."""
    encoding = "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8"
    # "replace" also absorbs a multi-byte character cut at the end of the head and
    # the odd Latin-1 byte; binary data turns into many replacement characters.
    text = head.decode(encoding, errors="replace")
    printable = sum(
        1 for char in text if char != "\ufffd" and (char.isprintable() or char in "\t\r\n\x0c")
    )
    return text if text and printable / len(text) > 0.95 else None
