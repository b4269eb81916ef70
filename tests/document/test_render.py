"""Rendering one page to a normalized image, and refusing what cannot be rendered."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pdf2image.exceptions import PDFPageCountError, PDFPopplerTimeoutError, PDFSyntaxError
from PIL import Image

from docintel.document import render
from docintel.document.render import RenderedPage, encode_png, normalize_mode, render_page
from docintel.errors import DocumentError, ErrorCode
from tests.fixtures.documents import (
    PdfPage,
    make_bomb_pdf,
    make_encrypted_pdf,
    make_mixed_pdf,
    make_multipage_tiff,
    make_scanned_pdf,
    make_text_pdf,
    write_pdf,
)

PDF = "application/pdf"
LIMIT = 80_000_000


def _render(path: Path, media_type: str, number: int = 1, dpi: int = 72, **kw: Any) -> RenderedPage:
    return render_page(path, media_type, number, dpi, max_page_pixels=LIMIT, **kw)


def _dark_fraction(image: Image.Image) -> float:
    return float((np.asarray(image.convert("L")) < 128).mean())


# --- PDFs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("dpi", "size"), [(72, (612, 792)), (100, (850, 1100))])
def test_pdf_page_has_the_size_of_its_dpi(tmp_path: Path, dpi: int, size: tuple[int, int]) -> None:
    path = make_text_pdf(tmp_path / "doc.pdf", ["Hello world\nSecond line"])
    page = _render(path, PDF, dpi=dpi)
    assert page.dpi == dpi
    assert page.image.size == size
    assert page.image.mode == "L"  # black text on white: no colour to keep
    assert 0 < _dark_fraction(page.image) < 0.05  # text was drawn, the page is mostly white


def test_a_page_with_colour_stays_rgb(tmp_path: Path) -> None:
    red_box = b"1 0 0 rg 100 100 40 40 re f"
    path = write_pdf(tmp_path / "red.pdf", [PdfPage(lines=["Red"], extra_content=red_box)])
    image = _render(path, PDF, dpi=72).image
    assert image.mode == "RGB"
    assert image.getpixel((120, 792 - 120)) == (255, 0, 0)


def test_pdf_page_selection_and_rotation(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "doc.pdf",
        [PdfPage(lines=["portrait"]), PdfPage(lines=["turned"], rotate=90)],
    )
    assert _render(path, PDF, 1).image.size == (612, 792)
    assert _render(path, PDF, 2).image.size == (792, 612)


def test_pdf_crop_box_is_rendered(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "crop.pdf", [PdfPage(cropbox=(100, 100, 400, 500))])
    assert _render(path, PDF).image.size == (300, 400)


def test_scanned_and_mixed_pages(tmp_path: Path) -> None:
    scanned = make_scanned_pdf(tmp_path / "scan.pdf", ["Scanned words"], dpi=72, noise=0.001)
    assert _dark_fraction(_render(scanned, PDF).image) > 0
    mixed = make_mixed_pdf(tmp_path / "mixed.pdf", ["digital", "scan", "digital"], {2}, dpi=50)
    assert [_render(mixed, PDF, n, dpi=36).image.size for n in (1, 2, 3)] == [(306, 396)] * 3


def test_encrypted_pdf_renders_with_its_password(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "locked.pdf", ["Secret"], user_password="pw")
    with pytest.raises(DocumentError) as caught:
        _render(path, PDF)
    assert caught.value.code == ErrorCode.ENCRYPTED
    assert _render(path, PDF, password="pw").image.size == (612, 792)


def test_a_password_never_goes_to_poppler_and_pdfium_renders_the_same_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """poppler would take the password on its command line, readable in ``ps``."""
    pages = [PdfPage(lines=["Quarterly figures"]), PdfPage(lines=["turned"], rotate=90)]
    plain = write_pdf(tmp_path / "plain.pdf", pages)
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt("s3cret", "owner", algorithm="AES-256")
    locked = tmp_path / "locked.pdf"
    with locked.open("wb") as out:
        writer.write(out)
    by_poppler = [_render(plain, PDF, n).image for n in (1, 2)]

    def no_poppler(*args: object, **kwargs: object) -> None:
        raise AssertionError("the password must not reach pdftoppm")

    monkeypatch.setattr(render, "convert_from_path", no_poppler)
    by_pdfium = [_render(locked, PDF, n, password="s3cret").image for n in (1, 2)]
    for poppler_image, pdfium_image in zip(by_poppler, by_pdfium, strict=True):
        assert pdfium_image.size == poppler_image.size
        assert pdfium_image.mode == poppler_image.mode == "L"
        # Same text in the same place: the dark pixels nearly coincide.
        assert abs(_dark_fraction(pdfium_image) - _dark_fraction(poppler_image)) < 0.002
        assert _dark_fraction(pdfium_image) > 0


def test_empty_user_password_renders(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "open.pdf", ["Open"], user_password="")
    assert _dark_fraction(_render(path, PDF).image) > 0


def test_bomb_page_never_reaches_the_renderer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("poppler must not be asked to render a bomb")

    monkeypatch.setattr(render, "convert_from_path", refuse)
    path = make_bomb_pdf(tmp_path / "bomb.pdf")
    with pytest.raises(DocumentError) as caught:
        render_page(path, PDF, 1, 200, max_page_pixels=LIMIT)
    assert caught.value.code == ErrorCode.PAGE_TOO_LARGE


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (PDFPopplerTimeoutError("Run poppler timeout."), ErrorCode.TIMEOUT),
        (PDFPageCountError("Unable to get page count.\nSyntax Error"), ErrorCode.RENDER_FAILED),
        (PDFPageCountError("Unable to get page count.\nIncorrect password"), ErrorCode.ENCRYPTED),
        (PDFSyntaxError("Syntax Error: bad"), ErrorCode.CORRUPT),
    ],
)
def test_poppler_failures_become_document_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: Exception, code: ErrorCode
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(render, "convert_from_path", fail)
    path = make_text_pdf(tmp_path / "doc.pdf", ["x"])
    with pytest.raises(DocumentError) as caught:
        _render(path, PDF)
    assert caught.value.code == code


def test_poppler_gets_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = render.convert_from_path

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(render, "convert_from_path", spy)
    _render(make_text_pdf(tmp_path / "doc.pdf", ["x"]), PDF, timeout_s=7)
    assert seen["timeout"] == 7
    assert (seen["first_page"], seen["last_page"]) == (1, 1)


def test_nothing_rendered_is_a_render_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "convert_from_path", lambda *a, **k: [])
    with pytest.raises(DocumentError) as caught:
        _render(make_text_pdf(tmp_path / "doc.pdf", ["x"]), PDF)
    assert caught.value.code == ErrorCode.RENDER_FAILED


# --- images --------------------------------------------------------------------------------


def _save(tmp_path: Path, image: Image.Image, name: str, **params: Any) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def _half_transparent(mode: str) -> Image.Image:
    """Left half opaque dark, right half fully transparent."""
    image = Image.new(mode, (40, 20), (0,) * len(mode))
    alpha = Image.new("L", (40, 20), 0)
    alpha.paste(255, (0, 0, 20, 20))
    image.putalpha(alpha)
    return image


def test_rgba_is_flattened_on_white(tmp_path: Path) -> None:
    image = _half_transparent("RGBA")
    page = _render(_save(tmp_path, image, "a.png"), "image/png")
    assert page.image.mode == "RGB"
    assert page.image.getpixel((5, 5)) == (0, 0, 0)
    assert page.image.getpixel((35, 5)) == (255, 255, 255)


def test_la_is_flattened_to_gray(tmp_path: Path) -> None:
    page = _render(_save(tmp_path, _half_transparent("LA"), "la.png"), "image/png")
    assert page.image.mode == "L"
    assert (page.image.getpixel((5, 5)), page.image.getpixel((35, 5))) == (0, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (40, 20), 1)
    image.putpalette([255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 20, 20))
    path = _save(tmp_path, image, "p.png", transparency=1)  # blue is transparent
    page = _render(path, "image/png")
    assert page.image.mode == "RGB"
    assert page.image.getpixel((5, 5)) == (255, 0, 0)
    assert page.image.getpixel((35, 5)) == (255, 255, 255)


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    image = Image.new("RGB", (30, 10), (0, 128, 255)).convert("P")
    page = _render(_save(tmp_path, image, "p.gif"), "image/gif")
    assert page.image.mode == "RGB"


def test_cmyk_becomes_rgb(tmp_path: Path) -> None:
    image = Image.new("CMYK", (30, 10), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (0, 0, 10, 10))
    page = _render(_save(tmp_path, image, "c.jpg", quality=95), "image/jpeg")
    assert page.image.mode == "RGB"
    white, black = page.image.getpixel((25, 5)), page.image.getpixel((5, 5))
    assert isinstance(white, tuple) and isinstance(black, tuple)
    assert min(white) > 240 and max(black) < 20


def test_16_bit_gray_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    page = _render(_save(tmp_path, image, "g16.png"), "image/png")
    assert page.image.mode == "L"
    assert [page.image.getpixel((x, 0)) for x in range(4)] == [0, 64, 128, 255]


def test_32_bit_gray(tmp_path: Path) -> None:
    eight_bit = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert eight_bit.mode == "I"
    out = normalize_mode(eight_bit)
    assert out.mode == "L" and [out.getpixel((x, 0)) for x in range(3)] == [0, 100, 255]
    wide = normalize_mode(Image.fromarray(np.array([[-10, 0, 990]], dtype=np.int32)))
    assert [wide.getpixel((x, 0)) for x in range(3)] == [0, 3, 255]
    floats = normalize_mode(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert [floats.getpixel((x, 0)) for x in range(3)] == [0, 128, 255]


def test_bilevel_becomes_gray(tmp_path: Path) -> None:
    image = Image.new("1", (16, 8), 1)
    image.paste(0, (0, 0, 8, 8))
    page = _render(_save(tmp_path, image, "b.tif", compression="group4"), "image/tiff")
    assert page.image.mode == "L"
    assert (page.image.getpixel((2, 2)), page.image.getpixel((12, 2))) == (0, 255)


@pytest.mark.parametrize(("mode", "fmt"), [("L", "png"), ("RGB", "bmp"), ("L", "pgm")])
def test_gray_stays_gray_and_rgb_stays_rgb(tmp_path: Path, mode: str, fmt: str) -> None:
    media_type = {"png": "image/png", "bmp": "image/bmp", "pgm": "image/x-portable-anymap"}[fmt]
    page = _render(_save(tmp_path, Image.new(mode, (12, 7), 200), f"x.{fmt}"), media_type)
    assert (page.image.mode, page.image.size) == (mode, (12, 7))


def test_jpeg2000(tmp_path: Path) -> None:
    page = _render(_save(tmp_path, Image.new("RGB", (32, 16), "white"), "x.jp2"), "image/jp2")
    assert (page.image.mode, page.image.size) == ("RGB", (32, 16))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored turned 90 degrees clockwise
    page = _render(_save(tmp_path, image, "r.jpg", exif=exif, quality=95), "image/jpeg")
    assert page.image.size == (20, 40)
    top, bottom = page.image.getpixel((10, 5)), page.image.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[1] < 60  # the stored left side is now on top
    assert min(bottom) > 200


def test_multipage_tiff_frame_selection(tmp_path: Path) -> None:
    path = tmp_path / "frames.tif"
    frames = [Image.new("L", (30 + n, 20), 40 * n) for n in range(4)]
    frames[0].save(path, save_all=True, append_images=frames[1:], dpi=(150, 150))
    for number in (1, 3, 4, 2):
        page = _render(path, "image/tiff", number)
        assert page.image.size == (29 + number, 20)
        assert page.image.getpixel((0, 0)) == 40 * (number - 1)
        assert page.dpi == 150


def test_image_dpi_is_its_own(tmp_path: Path) -> None:
    with_dpi = _save(tmp_path, Image.new("L", (10, 10)), "a.png", dpi=(240, 240))
    without = _save(tmp_path, Image.new("L", (10, 10)), "b.png")
    assert _render(with_dpi, "image/png", dpi=200).dpi == 240
    assert _render(without, "image/png", dpi=200).dpi == 300


def test_text_tiff_renders(tmp_path: Path) -> None:
    path = make_multipage_tiff(tmp_path / "t.tif", ["first page", "second page"])
    page = _render(path, "image/tiff", 2)
    assert (page.image.mode, page.image.size, page.dpi) == ("L", (600, 400), 100)
    assert _dark_fraction(page.image) > 0


def test_truncated_image_is_corrupt(tmp_path: Path) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8))
    data = io.BytesIO()
    noisy.save(data, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(DocumentError) as caught:
        _render(path, "image/png")
    assert caught.value.code == ErrorCode.CORRUPT


def test_huge_frame_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    Image.new("1", (100, 100), 1).save(
        path, save_all=True, append_images=[Image.new("1", (3000, 3000), 1)], compression="group4"
    )
    assert render_page(path, "image/tiff", 1, 200, max_page_pixels=1_000_000).image.size == (
        100,
        100,
    )
    with pytest.raises(DocumentError) as caught:
        render_page(path, "image/tiff", 2, 200, max_page_pixels=1_000_000)
    assert caught.value.code == ErrorCode.PAGE_TOO_LARGE


def test_encode_png_round_trips() -> None:
    image = Image.new("RGB", (64, 32), (10, 20, 30))
    data = encode_png(image)
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "RGB" and decoded.getpixel((3, 3)) == (10, 20, 30)


def test_unsupported_media_type(tmp_path: Path) -> None:
    with pytest.raises(DocumentError) as caught:
        _render(tmp_path / "x.txt", "text/plain")
    assert caught.value.code == ErrorCode.UNSUPPORTED_TYPE
