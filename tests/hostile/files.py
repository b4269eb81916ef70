"""Hostile files, one maker per kind, each with the outcome docintel must reach.

The makers that already exist for the unit tests (corrupt, encrypted, zero-page,
bomb PDFs, the PNG bomb) are reused from ``tests.fixtures.documents``; the ones
here write what those do not: a page tree that lies about its size or points
at itself, nesting deeper than any parser's stack, encryption without an /ID,
a TIFF of thousands of tiny frames, a sparse gigabyte of zeros, and other file
types renamed to ``.pdf``. Every file is small on disk and quick to make.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docintel.errors import ErrorCode
from tests.fixtures import documents as fx

GIGABYTE = 1 << 30

# Deeper than PDFium's object parser (64 levels) and pypdf's recursion limit
# (1,000 frames) go: a reader that recursed for every level would overflow.
NESTING_DEPTH = 100_000

# Over the default DOCINTEL_MAX_PAGES (5,000), so the TIFF is refused from its
# frame count; 1 x 1 pixel frames keep the whole file near 1 MB.
TIFF_FRAMES = 6_000


# --- page trees ----------------------------------------------------------------------------


def make_claims_many_pages_pdf(path: Path, claimed: int = 100_000) -> Path:
    """One real page under a page tree whose /Count says ``claimed``."""
    fx.make_text_pdf(path, ["The only real page"])
    return _rewrite(path, rb"/Count 1\b", f"/Count {claimed}".encode())


def make_self_kids_pdf(path: Path) -> Path:
    """The root /Pages node lists itself as its only kid: walking it never ends."""
    fx.make_text_pdf(path, ["Unreachable page"])
    # Object 2 is the page tree in every file write_pdf makes.
    return _rewrite(path, rb"/Kids \[[^\]]*\]", b"/Kids [2 0 R]")


def make_self_reference_pdf(path: Path) -> Path:
    """A page whose /Contents and /Resources are objects that refer to themselves."""
    fx.make_text_pdf(path, ["Page with looping objects"])
    data = path.read_bytes()
    loop = _next_object_number(data)
    page = re.search(rb"/Resources << /Font << /F1 \d+ 0 R >> >> /Contents \d+ 0 R", data)
    assert page is not None
    looping = f"/Resources {loop} 0 R /Contents {loop + 1} 0 R".encode()
    extra = (
        f"{loop} 0 obj\n<< /Font {loop} 0 R /Self {loop} 0 R >>\nendobj\n"
        f"{loop + 1} 0 obj\n[{loop + 1} 0 R {loop + 1} 0 R]\nendobj\n"
    ).encode()
    return _append_objects(path, data.replace(page.group(0), looping), extra)


def make_deeply_nested_pdf(path: Path, depth: int = NESTING_DEPTH) -> Path:
    """The page tree's /Kids is an array nested ``depth`` deep, a dict beside it as deep."""
    fx.make_text_pdf(path, ["Buried page"])
    arrays = b"[" * depth + b"3 0 R" + b"]" * depth
    dicts = b"<< /A " * depth + b"1" + b" >>" * depth
    data = re.sub(rb"/Kids \[[^\]]*\]", b"/Kids " + arrays + b" /Deep " + dicts, path.read_bytes())
    path.write_bytes(data)
    return _fix_xref(path)


# --- encryption ----------------------------------------------------------------------------


def make_encrypted_without_id_pdf(path: Path) -> Path:
    """RC4-encrypted with a user password, then the trailer's /ID removed.

    The file key is derived from the first /ID string; without it no password
    (not even the right one) yields the key the content was encrypted with.
    """
    fx.make_encrypted_pdf(path, algorithm="RC4-128")
    return _rewrite(path, rb"/ID\s*\[\s*<[0-9a-fA-F]*>\s*<[0-9a-fA-F]*>\s*\]", b"")


# --- images --------------------------------------------------------------------------------


def make_many_frames_tiff(path: Path, frames: int = TIFF_FRAMES) -> Path:
    """A TIFF of ``frames`` pages, each one white pixel, written by hand.

    Pillow's own ``save_all`` takes half a minute for 6,000 frames; each frame
    here is one IFD of eight tags followed by its single pixel.
    """
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for index in range(frames):
        ifd_at = len(out)
        pixel_at = ifd_at + 2 + 8 * 12 + 4
        next_ifd = 0 if index == frames - 1 else pixel_at + 2  # keep IFDs word-aligned
        tags = [
            (256, 3, 1),  # ImageWidth
            (257, 3, 1),  # ImageLength
            (258, 3, 8),  # BitsPerSample
            (259, 3, 1),  # Compression: none
            (262, 3, 1),  # PhotometricInterpretation: black is zero
            (273, 4, pixel_at),  # StripOffsets
            (278, 3, 1),  # RowsPerStrip
            (279, 4, 1),  # StripByteCounts
        ]
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            out += struct.pack("<HHII", tag, kind, 1, value)
        out += struct.pack("<I", next_ifd) + b"\xff\x00"
    path.write_bytes(bytes(out))
    return path


# --- not PDFs at all -----------------------------------------------------------------------


def make_sparse_zeros(path: Path, size: int = GIGABYTE) -> Path:
    """``size`` zero bytes that take no disk: a hole, made in no time."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def make_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("report.txt", "a text file in an archive")
    return path


def make_docx(path: Path) -> Path:
    """The parts a DOCX starts with; its first bytes are a ZIP's, as in a real one."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", '<?xml version="1.0"?><w:document/>')
    return path


def make_html(path: Path) -> Path:
    path.write_text("<!DOCTYPE html>\n<html><body><h1>Invoice</h1></body></html>\n")
    return path


def make_elf(path: Path) -> Path:
    """An ELF header (64-bit, little-endian, x86-64) and padding: enough to be recognised."""
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x02\x00\x3e\x00"
    path.write_bytes(header + b"\x00" * 1000)
    return path


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile kind: its file name, its maker, and the error it must end with.

    ``code`` None: the file is odd but readable (poppler and pypdf open it), so
    it must end ``done``. ``refused_at_upload`` is the HTTP status the API
    answers without storing anything (the type or size is known from the
    upload itself), else None.
    """

    kind: str
    filename: str
    make: Callable[[Path], Path]
    code: ErrorCode | None
    refused_at_upload: int | None = None

    @property
    def status(self) -> str:
        return "done" if self.code is None else "failed"

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return self.make(folder / self.filename)


def _encrypted(algorithm: str) -> Callable[[Path], Path]:
    return lambda path: fx.make_encrypted_pdf(path, algorithm=algorithm)


def _corrupt(kind: fx.CorruptKind) -> Callable[[Path], Path]:
    return lambda path: fx.make_corrupt_pdf(path, kind)


HOSTILE: tuple[Hostile, ...] = (
    Hostile("garbage", "garbage.pdf", _corrupt("garbage"), ErrorCode.CORRUPT),
    Hostile("truncated", "truncated.pdf", _corrupt("truncated"), ErrorCode.CORRUPT),
    Hostile("header only", "header-only.pdf", _corrupt("header_only"), ErrorCode.CORRUPT),
    Hostile("broken xref", "bad-xref.pdf", _corrupt("bad_xref"), ErrorCode.CORRUPT),
    Hostile("RC4", "rc4.pdf", _encrypted("RC4-128"), ErrorCode.ENCRYPTED),
    Hostile("AES-128", "aes128.pdf", _encrypted("AES-128"), ErrorCode.ENCRYPTED),
    Hostile("AES-256", "aes256.pdf", _encrypted("AES-256"), ErrorCode.ENCRYPTED),
    Hostile("encrypted, no /ID", "no-id.pdf", make_encrypted_without_id_pdf, ErrorCode.ENCRYPTED),
    Hostile("zero pages", "zero-pages.pdf", fx.make_zero_page_pdf, ErrorCode.ZERO_PAGES),
    Hostile(
        "claims 100,000 pages", "100k-pages.pdf", make_claims_many_pages_pdf, ErrorCode.CORRUPT
    ),
    Hostile("deeply nested", "nested.pdf", make_deeply_nested_pdf, ErrorCode.CORRUPT),
    Hostile("Kids is itself", "self-kids.pdf", make_self_kids_pdf, ErrorCode.CORRUPT),
    # Viewers show a blank page: PDFium and poppler stop at the loops.
    Hostile("self-reference", "self-ref.pdf", make_self_reference_pdf, None),
    Hostile(
        "20,000 pt page",
        "huge-page.pdf",
        lambda path: fx.make_bomb_pdf(path, 20_000.0),
        ErrorCode.PAGE_TOO_LARGE,
    ),
    Hostile(
        "50,000 px image",
        "bomb.png",
        lambda path: fx.make_png_bomb(path, 50_000, 50_000),
        ErrorCode.PAGE_TOO_LARGE,
    ),
    Hostile("6,000-frame TIFF", "frames.tiff", make_many_frames_tiff, ErrorCode.TOO_MANY_PAGES),
    Hostile("1 GB of zeros", "zeros.pdf", make_sparse_zeros, ErrorCode.TOO_LARGE, 413),
    Hostile("ZIP as .pdf", "archive.pdf", make_zip, ErrorCode.UNSUPPORTED_TYPE, 415),
    Hostile("DOCX as .pdf", "letter.pdf", make_docx, ErrorCode.UNSUPPORTED_TYPE, 415),
    Hostile("HTML as .pdf", "page.pdf", make_html, ErrorCode.UNSUPPORTED_TYPE, 415),
    Hostile("ELF as .pdf", "program.pdf", make_elf, ErrorCode.UNSUPPORTED_TYPE, 415),
)


def by_kind(*kinds: str) -> list[Hostile]:
    found = {case.kind: case for case in HOSTILE}
    return [found[kind] for kind in kinds]


# --- editing hand-written PDFs -------------------------------------------------------------


def _rewrite(path: Path, pattern: bytes, replacement: bytes) -> Path:
    data, count = re.subn(pattern, replacement, path.read_bytes(), count=1)
    assert count == 1, f"{pattern!r} not found in {path.name}"
    path.write_bytes(data)
    return _fix_xref(path)


def _next_object_number(data: bytes) -> int:
    return max(int(n) for n in re.findall(rb"(\d+) 0 obj", data)) + 1


def _append_objects(path: Path, data: bytes, objects: bytes) -> Path:
    """Insert ``objects`` before the xref table; ``_fix_xref`` then indexes them."""
    at = data.rindex(b"\nxref\n") + 1
    path.write_bytes(data[:at] + objects + data[at:])
    return _fix_xref(path)


def _fix_xref(path: Path) -> Path:
    """Rewrite the xref table for where objects sit now, so only the damage meant is there.

    Without this an edit would also leave every later offset wrong, and the
    file would test the readers' xref repair instead of the kind it is made for.
    """
    data = path.read_bytes()
    if b"\nxref\n" not in data:
        return path
    body = data[: data.rindex(b"\nxref\n") + 1]
    offsets = {int(m.group(1)): m.start() for m in re.finditer(rb"(?m)^(\d+) 0 obj", body)}
    count = max(offsets) + 1
    table = io.BytesIO()
    table.write(f"xref\n0 {count}\n0000000000 65535 f \n".encode())
    for number in range(1, count):
        table.write(f"{offsets.get(number, 0):010d} 00000 n \n".encode())
    trailer = data[data.rindex(b"trailer") : data.rindex(b"startxref")]
    trailer = re.sub(rb"/Size \d+", f"/Size {count}".encode(), trailer)
    tail = f"startxref\n{len(body)}\n%%EOF\n".encode()
    path.write_bytes(body + table.getvalue() + trailer + tail)
    return path
