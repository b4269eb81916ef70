"""Read a born-digital page's text layer as lines in page-image pixels, and judge it.

Pages whose text layer is real skip OCR entirely (``ocr_mode=auto``), which is
where most of the time on digital documents is saved. The lines produced here
are drop-in replacements for OCR output: same ``TextLine`` type, polygons in
the pixels of the page image poppler renders at the same dpi (crop box,
``/Rotate`` applied, origin top-left).

The verdict errs towards OCR: a page whose layer is empty, garbage (fonts
without a Unicode map), or only a page number over a full-page scan is sent to
OCR, because a wrong "keep" loses the page's text while a wrong "OCR" only
costs time.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from docintel.document.pdf_open import PDFIUM_LOCK, open_pdf
from docintel.errors import DocumentError, ErrorCode
from docintel.geometry import Polygon, TextLine

# Line splitting, in units of the line's height (font ascent to descent).
_MAX_GAP = 0.8  # a wider gap along the line starts a new segment (table columns)
_MAX_BACKSTEP = 1.5  # a jump this far backwards does too (text drawn out of order)
_MAX_SHIFT = 0.6  # a centre moved this far across the line starts a new line

# Verdict thresholds.
_MAX_BAD_RATIO = 0.10  # replacement / private-use / control characters among non-spaces
_MIN_ALNUM_RATIO = 0.40  # letters and digits among non-spaces
_SCAN_IMAGE_COVERAGE = 0.50  # images covering this much of the page make it look scanned
_MIN_TEXT_COVERAGE = 0.05  # ... and then the text must cover this much of it
_MIN_CHARS_ON_SCAN = 100  # ... and have this many non-space characters

# Images under this effective resolution cannot hold legible text: they are
# backgrounds, gradients or 1x1 fills stretched over the page, not scans.
_MIN_SCAN_DPI = 30.0
_COVERAGE_GRID = 128

_LIGATURES = {chr(code): unicodedata.normalize("NFKC", chr(code)) for code in range(0xFB00, 0xFB07)}
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True, slots=True)
class TextLayerVerdict:
    """Whether to trust a page's text layer (``use_text_layer``) and why, for logs and rows."""

    use_text_layer: bool
    reason: str
    chars: int = 0
    text_coverage: float = 0.0
    image_coverage: float = 0.0


def extract_text_lines(
    pdf_path: Path, page_number: int, dpi: int, password: str | None = None
) -> list[TextLine]:
    """The text lines of page ``page_number`` (1-based), boxes in page-image pixels at ``dpi``.

    Characters are grouped in PDFium's order into lines: a new line starts at
    PDFium's line breaks, when the text direction changes, when the next
    character sits off the current line, or after a wide gap (so table cells
    come out as separate lines, as an OCR engine would give them).
    Confidence is 1.0: the text is what the PDF says.
    """
    with PDFIUM_LOCK:  # PDFium is not thread-safe
        pdf = open_pdf(pdf_path, password)
        try:
            if not 1 <= page_number <= len(pdf):
                raise ValueError(f"page {page_number} out of range 1..{len(pdf)}")
            try:
                page = pdf[page_number - 1]
                textpage = page.get_textpage()
            except pdfium.PdfiumError as error:
                raise DocumentError(
                    ErrorCode.CORRUPT, f"page {page_number} cannot be read"
                ) from error
            mapper = _PageMapper(page, dpi)
            return _group_lines(textpage, mapper)
        finally:
            pdf.close()


def page_image_coverage(pdf_path: Path, page_number: int, password: str | None = None) -> float:
    """Fraction (0..1) of page ``page_number`` covered by raster images that could hold text.

    Counts images inside Form XObjects too (some scanners wrap the page image in
    one) and merges overlapping or tiled images (scanners that write strips).
    """
    with PDFIUM_LOCK:  # PDFium is not thread-safe
        return _image_coverage(open_pdf(pdf_path, password), page_number)


def _image_coverage(pdf: pdfium.PdfDocument, page_number: int) -> float:
    try:
        try:
            page = pdf[page_number - 1]
        except pdfium.PdfiumError as error:
            raise DocumentError(ErrorCode.CORRUPT, f"page {page_number} cannot be read") from error
        x0, y0, x1, y1 = (float(v) for v in page.get_bbox())
        if x1 <= x0 or y1 <= y0:
            return 0.0
        grid = np.zeros((_COVERAGE_GRID, _COVERAGE_GRID), dtype=bool)
        cell_w, cell_h = (x1 - x0) / _COVERAGE_GRID, (y1 - y0) / _COVERAGE_GRID
        for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]):
            left, bottom, right, top = (float(v) for v in obj.get_bounds())
            if not _holds_text(obj, right - left, top - bottom):
                continue
            # Cells whose centres fall inside the image (bounds are page coordinates,
            # with any enclosing form's matrix already applied by PDFium).
            c0 = max(0, math.ceil((left - x0) / cell_w - 0.5))
            c1 = min(_COVERAGE_GRID, math.floor((right - x0) / cell_w - 0.5) + 1)
            r0 = max(0, math.ceil((y1 - top) / cell_h - 0.5))
            r1 = min(_COVERAGE_GRID, math.floor((y1 - bottom) / cell_h - 0.5) + 1)
            if c1 > c0 and r1 > r0:
                grid[r0:r1, c0:c1] = True
        return float(grid.mean())
    finally:
        pdf.close()


def text_layer_quality(
    lines: list[TextLine], page_area_px: float, image_coverage: float = 0.0
) -> TextLayerVerdict:
    """Decide whether ``lines`` (from ``extract_text_lines``) are real text worth keeping.

    ``page_area_px`` is the page image's width x height at the lines' dpi;
    ``image_coverage`` comes from ``page_image_coverage``.
    """
    chars = [char for line in lines for char in line.text if not char.isspace()]
    if not chars:
        return TextLayerVerdict(False, "no text layer", 0, 0.0, image_coverage)
    count = len(chars)
    text_coverage = _text_coverage(lines, page_area_px)

    bad = sum(1 for char in chars if _is_bad(char))
    if bad / count > _MAX_BAD_RATIO:
        return TextLayerVerdict(
            False,
            f"garbage text layer: {bad / count:.0%} of the characters have no Unicode meaning",
            count,
            text_coverage,
            image_coverage,
        )
    alnum = sum(1 for char in chars if char.isalnum())
    if alnum / count < _MIN_ALNUM_RATIO:
        return TextLayerVerdict(
            False,
            f"garbage text layer: only {alnum / count:.0%} of the characters are letters or digits",
            count,
            text_coverage,
            image_coverage,
        )
    if image_coverage >= _SCAN_IMAGE_COVERAGE and (
        text_coverage < _MIN_TEXT_COVERAGE or count < _MIN_CHARS_ON_SCAN
    ):
        return TextLayerVerdict(
            False,
            f"images cover {image_coverage:.0%} of the page but the text layer only"
            f" {text_coverage:.1%} ({count} characters): the page looks scanned",
            count,
            text_coverage,
            image_coverage,
        )
    return TextLayerVerdict(True, "text layer is real text", count, text_coverage, image_coverage)


# --- geometry ------------------------------------------------------------------------------


class _PageMapper:
    """Maps PDF user-space points to pixels of the page image poppler renders.

    Poppler renders the crop box (clipped to the media box), turned clockwise
    by ``/Rotate``, at ``dpi / 72`` pixels per point, origin top-left.
    """

    def __init__(self, page: pdfium.PdfPage, dpi: int) -> None:
        self.x0, self.y0, self.x1, self.y1 = (float(v) for v in page.get_bbox())
        self.rotation = int(page.get_rotation()) % 360
        self.scale = dpi / 72.0
        width, height = self.x1 - self.x0, self.y1 - self.y0
        if self.rotation in (90, 270):
            width, height = height, width
        self.width_px, self.height_px = width * self.scale, height * self.scale

    def point(self, x: float, y: float) -> tuple[float, float]:
        u, v = x - self.x0, self.y1 - y  # unrotated, origin top-left, in points
        w, h = self.x1 - self.x0, self.y1 - self.y0
        if self.rotation == 90:
            u, v = h - v, u
        elif self.rotation == 180:
            u, v = w - u, h - v
        elif self.rotation == 270:
            u, v = v, w - u
        return u * self.scale, v * self.scale

    def rect(self, left: float, bottom: float, right: float, top: float) -> _Box:
        ax, ay = self.point(left, top)
        bx, by = self.point(right, bottom)
        return _Box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


@dataclass(slots=True)
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def union(self, other: _Box) -> None:
        self.x0, self.y0 = min(self.x0, other.x0), min(self.y0, other.y0)
        self.x1, self.y1 = max(self.x1, other.x1), max(self.y1, other.y1)

    def along(self, quadrant: int) -> tuple[float, float, float, float]:
        """(start, end, across-centre, height) of the box for text running in ``quadrant``.

        Quadrant q means the text runs q x 90 degrees clockwise from
        left-to-right in the image: 0 right, 1 down, 2 left, 3 up.
        """
        if quadrant == 0:
            return self.x0, self.x1, (self.y0 + self.y1) / 2, self.y1 - self.y0
        if quadrant == 1:
            return self.y0, self.y1, (self.x0 + self.x1) / 2, self.x1 - self.x0
        if quadrant == 2:
            return -self.x1, -self.x0, (self.y0 + self.y1) / 2, self.y1 - self.y0
        return -self.y1, -self.y0, (self.x0 + self.x1) / 2, self.x1 - self.x0


@dataclass(slots=True)
class _Line:
    quadrant: int
    box: _Box
    chars: list[str] = field(default_factory=list)
    end: float = 0.0  # where the last visible character ends, along the text

    def polygon(self) -> Polygon:
        b = self.box
        corners = [(b.x0, b.y0), (b.x1, b.y0), (b.x1, b.y1), (b.x0, b.y1)]
        # Start at the text's own top-left: for text running down the page that
        # is the image's top-right corner, and so on round the box.
        ordered = corners[self.quadrant :] + corners[: self.quadrant]
        return (
            ordered[0][0], ordered[0][1], ordered[1][0], ordered[1][1],
            ordered[2][0], ordered[2][1], ordered[3][0], ordered[3][1],
        )  # fmt: skip


def _group_lines(textpage: pdfium.PdfTextPage, mapper: _PageMapper) -> list[TextLine]:
    lines: list[TextLine] = []
    current: _Line | None = None

    def flush() -> None:
        nonlocal current
        if current is not None:
            line = _finish(current, mapper)
            if line is not None:
                lines.append(line)
        current = None

    count = textpage.count_chars()
    index = 0
    while index < count:
        char, used = _char_at(textpage, index, count)
        position = index
        index += used
        if char in "\r\n":
            flush()
            continue
        if char.isspace():
            if current is not None:
                current.chars.append(" ")
            continue
        box = _char_box(textpage, position, mapper)
        if box is None:  # no extent: keep the text, it cannot move the line
            if current is not None:
                current.chars.append(char)
            continue
        quadrant = _quadrant(textpage, position, mapper.rotation)
        start, end, centre, height = box.along(quadrant)
        if current is not None:
            _, _, line_centre, line_height = current.box.along(quadrant)
            unit = max(height, line_height)
            gap = start - current.end
            if (
                quadrant != current.quadrant
                or abs(centre - line_centre) > _MAX_SHIFT * unit
                or gap > _MAX_GAP * unit
                or gap < -_MAX_BACKSTEP * unit
            ):
                flush()
        if current is None:
            current = _Line(quadrant, box, end=end)
        else:
            current.box.union(box)
            current.end = max(current.end, end)
        current.chars.append(char)
    flush()
    return lines


def _finish(line: _Line, mapper: _PageMapper) -> TextLine | None:
    text = " ".join("".join(line.chars).split())
    if not text:
        return None
    box = line.box
    # Text outside the rendered area is invisible in the page image: drop it,
    # and clip what straddles the edge so polygons stay inside the image.
    if box.x1 <= 0 or box.y1 <= 0 or box.x0 >= mapper.width_px or box.y0 >= mapper.height_px:
        return None
    box.x0, box.y0 = max(box.x0, 0.0), max(box.y0, 0.0)
    box.x1, box.y1 = min(box.x1, mapper.width_px), min(box.y1, mapper.height_px)
    return TextLine(text=text, polygon=line.polygon(), confidence=1.0)


def _char_at(textpage: pdfium.PdfTextPage, index: int, count: int) -> tuple[str, int]:
    """The character at ``index`` and how many slots it used (2 for a surrogate pair)."""
    code = pdfium_c.FPDFText_GetUnicode(textpage.raw, index)
    if 0xD800 <= code <= 0xDBFF and index + 1 < count:
        low = pdfium_c.FPDFText_GetUnicode(textpage.raw, index + 1)
        if 0xDC00 <= low <= 0xDFFF:
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), 2
    if pdfium_c.FPDFText_IsHyphen(textpage.raw, index):
        return "-", 1  # PDFium marks a line-end hyphen with a control code
    if pdfium_c.FPDFText_HasUnicodeMapError(textpage.raw, index):
        return _REPLACEMENT, 1  # the font has no Unicode map for this glyph: unknown text
    char = chr(code) if code < 0x110000 else _REPLACEMENT
    return _LIGATURES.get(char, char), 1


def _char_box(textpage: pdfium.PdfTextPage, index: int, mapper: _PageMapper) -> _Box | None:
    # The loose box spans the font's ascent to descent, so every character of a
    # line has the same height (tight boxes of "a" and "T" differ), which makes
    # line boxes look like OCR boxes and line tests robust.
    left, bottom, right, top = textpage.get_charbox(index, loose=True)
    if right - left <= 0 or top - bottom <= 0:
        left, bottom, right, top = textpage.get_charbox(index)
        if right - left <= 0 and top - bottom <= 0:
            return None
    return mapper.rect(left, bottom, right, top)


def _quadrant(textpage: pdfium.PdfTextPage, index: int, rotation: int) -> int:
    """Direction of the character in the page image, as a multiple of 90 degrees clockwise.

    PDFium's angle is clockwise on the (y-down) page; /Rotate turns it further.
    """
    angle = pdfium_c.FPDFText_GetCharAngle(textpage.raw, index)
    degrees = math.degrees(angle) if angle >= 0 else 0.0  # -1 means unknown
    return round((degrees + rotation) / 90.0) % 4


# --- verdict helpers -----------------------------------------------------------------------


def _is_bad(char: str) -> bool:
    if char == _REPLACEMENT:
        return True
    category = unicodedata.category(char)
    return category in ("Co", "Cc", "Cn", "Cs")  # private use, control, unassigned, surrogate


def _text_coverage(lines: list[TextLine], page_area_px: float) -> float:
    if page_area_px <= 0:
        return 0.0
    area = 0.0
    for line in lines:
        x0, y0, x1, y1 = line.bbox
        area += max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return min(1.0, area / page_area_px)


def _holds_text(obj: pdfium.PdfObject, width_pt: float, height_pt: float) -> bool:
    if width_pt <= 0 or height_pt <= 0:
        return False
    if not isinstance(obj, pdfium.PdfImage):
        return True  # size unknown: count it, erring towards OCR
    try:
        pixels_w, pixels_h = obj.get_px_size()
    except pdfium.PdfiumError:
        return True
    return min(pixels_w * 72.0 / width_pt, pixels_h * 72.0 / height_pt) >= _MIN_SCAN_DPI
