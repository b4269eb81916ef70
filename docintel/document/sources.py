"""Open a document (a PDF or an image) and answer questions about its pages, lazily.

Nothing here decodes page content: a source only counts pages and reads page
sizes, so a 2,000-page PDF or a 500-frame TIFF costs next to nothing to open
and a decompression bomb is refused from its header before a single pixel is
allocated. Every way an input can be bad ends in a ``DocumentError`` with a
stable code; anything else (a missing file, a full disk) propagates unchanged
because it is not the input's fault and the queue should retry it.
"""

from __future__ import annotations

import ctypes
import math
import struct
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import ExifTags, Image

from docintel.document.pdf_open import PDFIUM_LOCK, open_pdf
from docintel.document.sniff import (
    BMP,
    GIF,
    IMAGE_MEDIA_TYPES,
    JP2,
    JPEG,
    PDF,
    PNG,
    PNM,
    TIFF,
    WEBP,
)
from docintel.errors import DocumentError, ErrorCode

DEFAULT_IMAGE_DPI = 300
"""Assumed resolution of an image that does not say (typical for document scans)."""

# Image resolutions outside this range are almost always wrong metadata (0, 1,
# or a unit mix-up) rather than a real scan; such images get the default.
_PLAUSIBLE_DPI = range(50, 2401)

# Only these Pillow plugins may parse a file of each sniffed type: an attacker
# cannot steer a PNG upload into some rarely used, less hardened decoder.
_PIL_FORMATS: dict[str, tuple[str, ...]] = {
    PNG: ("PNG",),
    JPEG: ("JPEG", "MPO"),
    TIFF: ("TIFF",),
    WEBP: ("WEBP",),
    GIF: ("GIF",),
    BMP: ("BMP", "DIB"),
    JP2: ("JPEG2000",),
    PNM: ("PPM",),
}

# Formats whose frames are pages. A JPEG's extra MPO frames are previews or
# depth maps, not pages, so JPEGs always have one page.
_MULTI_PAGE_FORMATS = frozenset({"TIFF", "GIF", "WEBP"})

# What Pillow raises for a file it cannot parse. A truncated or malformed file
# surfaces as any of these depending on the plugin; all mean "corrupt input".
PIL_DECODE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)


class DocumentSource(ABC):
    """An opened document: page count and per-page geometry. Page numbers are 1-based.

    Use it as a context manager (or call ``close``) to release the file promptly.
    """

    media_type: str
    page_count: int

    def __init__(self, *, max_page_pixels: int, dpi: int) -> None:
        self.max_page_pixels = max_page_pixels
        self.dpi = dpi

    @abstractmethod
    def page_size_points(self, number: int) -> tuple[float, float]:
        """Width and height of page ``number`` as displayed (rotation applied), in points."""

    @abstractmethod
    def page_pixels(self, number: int, dpi: int) -> tuple[int, int]:
        """Width and height in pixels of page ``number`` rendered at ``dpi``."""

    @abstractmethod
    def page_dpi(self, number: int, requested: int) -> int:
        """The resolution page ``number`` is rendered at when ``requested`` is asked for."""

    @abstractmethod
    def close(self) -> None:
        """Release the file; safe to call twice."""

    def check_structure(self) -> None:
        """``CORRUPT`` if the file's structure cannot be trusted; nothing to check by default."""
        return

    def check_page(self, number: int, dpi: int | None = None) -> tuple[int, int]:
        """Pixel size of page ``number``; ``PAGE_TOO_LARGE`` if over the pixel limit.

        Called before rendering so a page that would need gigabytes is refused
        from its declared size alone.
        """
        dpi = self.page_dpi(number, dpi if dpi is not None else self.dpi)
        width, height = self.page_pixels(number, dpi)
        if width <= 0 or height <= 0:
            raise DocumentError(ErrorCode.CORRUPT, f"page {number} has an empty page area")
        if width * height > self.max_page_pixels:
            raise DocumentError(
                ErrorCode.PAGE_TOO_LARGE,
                f"page {number} would be {width} x {height} pixels"
                f"{'' if self.media_type != PDF else f' at {dpi} dpi'}"
                f" ({width * height / 1e6:.0f} megapixels); the limit is"
                f" {self.max_page_pixels / 1e6:.0f} megapixels",
            )
        return width, height

    def _check_number(self, number: int) -> None:
        if not 1 <= number <= self.page_count:
            raise ValueError(f"page {number} out of range 1..{self.page_count}")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_source(
    path: Path,
    media_type: str,
    *,
    password: str | None = None,
    max_pages: int,
    max_page_pixels: int,
    dpi: int,
) -> DocumentSource:
    """Open ``path`` as ``media_type`` (from ``sniff_media_type``) and check document limits.

    Raises ``DocumentError``: ``UNSUPPORTED_TYPE``, ``ENCRYPTED``, ``CORRUPT``,
    ``ZERO_PAGES``, ``TOO_MANY_PAGES``, and ``PAGE_TOO_LARGE`` for an image whose
    first frame is over the limit (an image document has nothing else to show).
    The pixel size of PDF pages is checked per page (``check_page``) so one
    oversized page fails alone instead of taking the whole document with it.
    """
    source: DocumentSource
    if media_type == PDF:
        source = PdfSource(path, password=password, max_page_pixels=max_page_pixels, dpi=dpi)
    elif media_type in IMAGE_MEDIA_TYPES:
        source = ImageSource(path, media_type, max_page_pixels=max_page_pixels, dpi=dpi)
    else:
        raise DocumentError(
            ErrorCode.UNSUPPORTED_TYPE, f"docintel cannot process files of type {media_type!r}"
        )
    try:
        if source.page_count == 0:
            raise DocumentError(ErrorCode.ZERO_PAGES, "the document has no pages")
        source.check_structure()
        if source.page_count > max_pages:
            raise DocumentError(
                ErrorCode.TOO_MANY_PAGES,
                f"the document has {source.page_count} pages; the limit is {max_pages}",
            )
        if isinstance(source, ImageSource):
            source.check_page(1)
    except BaseException:
        source.close()
        raise
    return source


# --- PDF -----------------------------------------------------------------------------------


def pdf_pixels(points: float, dpi: int) -> int:
    """Pixels poppler's pdftoppm gives ``points`` at ``dpi``: it rounds up.

    PDFium reports sizes as 32-bit floats, so 791.76 arrives as 791.760009...;
    the small tolerance keeps that from rounding up one pixel too many.
    """
    return max(0, math.ceil(points * dpi / 72.0 - 1e-2))


_GRAY_SPACES = frozenset({pdfium_c.FPDF_COLORSPACE_DEVICEGRAY, pdfium_c.FPDF_COLORSPACE_CALGRAY})


def _is_gray_object(obj: Any) -> bool:
    kind = obj.type
    if kind == pdfium_c.FPDF_PAGEOBJ_FORM:
        return True  # its contents are visited themselves
    if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
        try:
            return obj.get_metadata().colorspace in _GRAY_SPACES
        except Exception:
            return False
    if kind not in (pdfium_c.FPDF_PAGEOBJ_TEXT, pdfium_c.FPDF_PAGEOBJ_PATH):
        return False  # shadings and whatever else
    for getter in (pdfium_c.FPDFPageObj_GetFillColor, pdfium_c.FPDFPageObj_GetStrokeColor):
        r, g, b, a = (ctypes.c_uint() for _ in range(4))
        if getter(obj.raw, r, g, b, a) and not r.value == g.value == b.value:
            return False
    return True


class PdfSource(DocumentSource):
    media_type = PDF

    def __init__(
        self, path: Path, *, password: str | None = None, max_page_pixels: int, dpi: int
    ) -> None:
        super().__init__(max_page_pixels=max_page_pixels, dpi=dpi)
        self.path = path
        # Held until close(): use a PdfSource in a `with` block, on one thread.
        PDFIUM_LOCK.acquire()
        try:
            self._pdf: pdfium.PdfDocument | None = open_pdf(path, password)
            self.page_count = len(self._pdf)
        except BaseException:
            PDFIUM_LOCK.release()
            raise

    @property
    def pdf(self) -> pdfium.PdfDocument:
        if self._pdf is None:
            raise ValueError("the source is closed")
        return self._pdf

    def check_structure(self) -> None:
        """``CORRUPT`` unless the last page the page tree counts can be found.

        PDFium takes the page count from the tree's /Count, which a file can set
        to anything: a 700-byte file claiming 100,000 pages (or a /Pages node
        whose kid is itself) would otherwise be refused as too long, or split
        into thousands of pages that each fail. Looking the last page up reads
        the page tree only, not the page.
        """
        size = pdfium_c.FS_SIZEF()
        last = self.page_count
        if not pdfium_c.FPDF_GetPageSizeByIndexF(self.pdf.raw, last - 1, size):
            pages = f"{last} pages" if last != 1 else "1 page"
            raise DocumentError(
                ErrorCode.CORRUPT,
                f"the page tree claims {pages}, but page {last} does not exist; the PDF is damaged",
            )

    def page_size_points(self, number: int) -> tuple[float, float]:
        self._check_number(number)
        try:
            # Crop box clipped to the media box, with /Rotate applied: exactly
            # the area poppler renders with -cropbox.
            width, height = self.pdf.get_page_size(number - 1)
        except pdfium.PdfiumError as error:
            raise DocumentError(ErrorCode.CORRUPT, f"page {number} cannot be read") from error
        return float(width), float(height)

    def page_pixels(self, number: int, dpi: int) -> tuple[int, int]:
        width, height = self.page_size_points(number)
        return pdf_pixels(width, dpi), pdf_pixels(height, dpi)

    def page_dpi(self, number: int, requested: int) -> int:
        return requested

    def page_is_colourless(self, number: int) -> bool:
        """Whether page ``number`` surely draws in grays only, so it can be rendered gray.

        Asked of PDFium's page objects (forms descended into): text and paths whose
        fill and stroke are gray, and images in a gray colour space. Anything else
        (a coloured object, an image in colour or of unknown colour, a shading, an
        annotation, an unreadable page) counts as colour: when in doubt, RGB.
        """
        self._check_number(number)
        try:
            page = self.pdf[number - 1]
        except pdfium.PdfiumError:
            return False
        try:
            if pdfium_c.FPDFPage_GetAnnotCount(page.raw) > 0:
                return False
            return all(_is_gray_object(obj) for obj in page.get_objects())
        finally:
            page.close()

    def close(self) -> None:
        if self._pdf is not None:
            try:
                self._pdf.close()
            finally:
                self._pdf = None
                PDFIUM_LOCK.release()


# --- images --------------------------------------------------------------------------------


def set_pil_pixel_limit(max_page_pixels: int) -> None:
    """Make Pillow's own decompression-bomb guard match our limit.

    Pillow refuses images over twice ``MAX_IMAGE_PIXELS`` while reading the
    header; left at its default (~89 MP) it would also refuse images a larger
    configured limit allows. This is process-wide, which is fine: every caller
    passes the same limit from settings.
    """
    Image.MAX_IMAGE_PIXELS = max_page_pixels


def open_image(path: Path, media_type: str, max_page_pixels: int) -> tuple[Image.Image, IO[bytes]]:
    """Open an image lazily (header only) with the Pillow plugin for ``media_type``.

    Returns the image and its file handle; the caller closes both.
    """
    set_pil_pixel_limit(max_page_pixels)
    handle = path.open("rb")  # outside the try: a missing file is not a corrupt one
    try:
        image = Image.open(handle, formats=_PIL_FORMATS.get(media_type))
    except Image.DecompressionBombError as error:
        handle.close()
        raise DocumentError(
            ErrorCode.PAGE_TOO_LARGE,
            f"the image is too large to process ({error}); the limit is"
            f" {max_page_pixels / 1e6:.0f} megapixels",
        ) from error
    except PIL_DECODE_ERRORS as error:
        handle.close()
        raise DocumentError(
            ErrorCode.CORRUPT, "the image is damaged or not a readable image file"
        ) from error
    return image, handle


def image_frame_count(image: Image.Image) -> int:
    if image.format not in _MULTI_PAGE_FORMATS:
        return 1
    return int(getattr(image, "n_frames", 1))


def image_dpi(image: Image.Image) -> int:
    """The image's own horizontal resolution if it states a plausible one, else 300."""
    info: Any = image.info.get("dpi")
    try:
        value = round(float(info[0]))
    except (TypeError, ValueError, IndexError, KeyError, OverflowError):
        return DEFAULT_IMAGE_DPI
    return value if value in _PLAUSIBLE_DPI else DEFAULT_IMAGE_DPI


def swaps_sides(image: Image.Image) -> bool:
    """True when the EXIF orientation turns the stored image by 90 or 270 degrees."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except PIL_DECODE_ERRORS:
        return False  # broken EXIF: render ignores it the same way
    return orientation in (5, 6, 7, 8)


class ImageSource(DocumentSource):
    """A raster image; multi-frame TIFF, GIF and WebP files have one page per frame.

    Images are never resampled, so their pixel size does not depend on the dpi
    asked for; their dpi is their own (or 300 when they do not say).
    """

    def __init__(self, path: Path, media_type: str, *, max_page_pixels: int, dpi: int) -> None:
        super().__init__(max_page_pixels=max_page_pixels, dpi=dpi)
        self.path = path
        self.media_type = media_type
        image, handle = open_image(path, media_type, max_page_pixels)
        self._image: Image.Image | None = image
        self._handle: IO[bytes] | None = handle
        try:
            self.page_count = image_frame_count(image)
        except PIL_DECODE_ERRORS as error:
            self.close()
            raise DocumentError(ErrorCode.CORRUPT, "the image's frames cannot be read") from error

    def frame(self, number: int) -> Image.Image:
        """The (still undecoded) image positioned at page ``number``."""
        self._check_number(number)
        if self._image is None:
            raise ValueError("the source is closed")
        try:
            if self._image.tell() != number - 1:
                self._image.seek(number - 1)
        except PIL_DECODE_ERRORS as error:
            raise DocumentError(ErrorCode.CORRUPT, f"page {number} cannot be read") from error
        return self._image

    def page_pixels(self, number: int, dpi: int) -> tuple[int, int]:
        image = self.frame(number)
        width, height = image.size
        return (height, width) if swaps_sides(image) else (width, height)

    def page_size_points(self, number: int) -> tuple[float, float]:
        width, height = self.page_pixels(number, self.dpi)
        dpi = self.page_dpi(number, self.dpi)
        return width * 72.0 / dpi, height * 72.0 / dpi

    def page_dpi(self, number: int, requested: int) -> int:
        return image_dpi(self.frame(number))

    def close(self) -> None:
        if self._image is not None:
            self._image.close()
            self._image = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
