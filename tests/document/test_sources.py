"""Opening documents: page counts, page sizes and every way an input can be refused."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from docintel.document.render import render_page
from docintel.document.sniff import sniff_media_type
from docintel.document.sources import DocumentSource, ImageSource, PdfSource, open_source
from docintel.document.textlayer import extract_text_lines, page_image_coverage
from docintel.errors import DocumentError, ErrorCode
from tests.fixtures.documents import (
    PdfPage,
    make_bomb_pdf,
    make_corrupt_pdf,
    make_encrypted_pdf,
    make_multipage_tiff,
    make_png_bomb,
    make_text_pdf,
    make_zero_page_pdf,
    write_pdf,
)

PDF = "application/pdf"
LIMITS = {"max_pages": 100, "max_page_pixels": 80_000_000, "dpi": 200}


def _open(path: Path, media_type: str | None = None, **overrides: object) -> DocumentSource:
    media_type = media_type or sniff_media_type(path.read_bytes()[:4096])
    options: dict[str, object] = {**LIMITS, **overrides}
    return open_source(path, media_type, **options)  # type: ignore[arg-type]


def _error(path: Path, media_type: str | None = None, **overrides: object) -> DocumentError:
    with pytest.raises(DocumentError) as caught:
        _open(path, media_type, **overrides).close()
    return caught.value


# --- PDFs ----------------------------------------------------------------------------------


def test_pdf_pages_and_sizes(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "doc.pdf",
        [
            PdfPage(lines=["Letter"]),
            PdfPage(lines=["A4 landscape by rotation"], width=595, height=842, rotate=90),
            PdfPage(lines=["Cropped"], origin=(100, 50), cropbox=(150, 100, 510, 604)),
        ],
    )
    with _open(path) as source:
        assert isinstance(source, PdfSource)
        assert source.media_type == PDF
        assert source.page_count == 3
        assert source.page_size_points(1) == (612.0, 792.0)
        assert source.page_size_points(2) == (842.0, 595.0)  # /Rotate 90 swaps the sides
        assert source.page_size_points(3) == (360.0, 504.0)  # the crop box is what shows
        assert source.page_pixels(1, 200) == (1700, 2200)
        assert source.page_pixels(2, 72) == (842, 595)
        assert source.page_pixels(3, 100) == (500, 700)
        assert source.check_page(1) == (1700, 2200)
        assert source.page_dpi(1, 150) == 150
        with pytest.raises(ValueError):
            source.page_size_points(4)


def test_encrypted_pdf_needs_its_password(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "locked.pdf", ["Secret"], user_password="userpass")
    error = _error(path)
    assert error.code == ErrorCode.ENCRYPTED
    assert error.message == "the PDF is password-protected; submit it with its password"

    wrong = _error(path, password="nope")
    assert wrong.code == ErrorCode.ENCRYPTED
    assert "wrong" in wrong.message

    for password in ("userpass", "ownerpass"):
        with _open(path, password=password) as source:
            assert source.page_count == 1


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_empty_user_password_opens_without_one(tmp_path: Path, algorithm: str) -> None:
    """Like ocrmypdf's encrypted_algo4.pdf: encrypted, but any viewer opens it."""
    path = make_encrypted_pdf(
        tmp_path / "open.pdf", ["Hello"], user_password="", algorithm=algorithm
    )
    with _open(path) as source:
        assert source.page_count == 1


@pytest.mark.parametrize("kind", ["garbage", "truncated", "header_only", "bad_xref", "text"])
def test_corrupt_pdf(tmp_path: Path, kind: str) -> None:
    path = make_corrupt_pdf(tmp_path / f"{kind}.pdf", kind)  # type: ignore[arg-type]
    error = _error(path, PDF)
    assert error.code == ErrorCode.CORRUPT
    assert "damaged" in error.message


def test_truncated_large_pdf_is_corrupt(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "long.pdf", [f"Page {n}\nmore text" for n in range(200)])
    data = path.read_bytes()
    for fraction in (0.25, 0.5, 0.9, 0.99):
        cut = tmp_path / f"cut{fraction}.pdf"
        cut.write_bytes(data[: int(len(data) * fraction)])
        assert _error(cut, PDF).code == ErrorCode.CORRUPT


def test_zero_pages(tmp_path: Path) -> None:
    error = _error(make_zero_page_pdf(tmp_path / "zero.pdf"))
    assert error.code == ErrorCode.ZERO_PAGES


def test_hand_written_zero_pages(tmp_path: Path) -> None:
    error = _error(write_pdf(tmp_path / "zero.pdf", []))
    assert error.code == ErrorCode.ZERO_PAGES


def test_too_many_pages(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "three.pdf", ["one", "two", "three"])
    error = _error(path, max_pages=2)
    assert error.code == ErrorCode.TOO_MANY_PAGES
    assert "3 pages" in error.message and "limit is 2" in error.message
    with _open(path, max_pages=3) as source:
        assert source.page_count == 3


def test_bomb_page_is_refused_before_rendering(tmp_path: Path) -> None:
    """A 14400 pt page is 40000 x 40000 px at 200 dpi; only that page fails."""
    path = make_bomb_pdf(tmp_path / "bomb.pdf", pages_before=1)
    started = time.perf_counter()
    with _open(path) as source:  # the document itself opens: one bad page, not a bad file
        assert source.page_count == 2
        assert source.check_page(1) == (1700, 2200)
        with pytest.raises(DocumentError) as caught:
            source.check_page(2)
        assert source.check_page(2, dpi=10) == (2000, 2000)
    assert time.perf_counter() - started < 1.0
    assert caught.value.code == ErrorCode.PAGE_TOO_LARGE
    assert "40000 x 40000" in caught.value.message and "200 dpi" in caught.value.message


def test_open_is_lazy_for_long_documents(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "long.pdf", [f"Page {n}" for n in range(1, 1501)])
    started = time.perf_counter()
    with _open(path, max_pages=5000) as source:
        assert source.page_count == 1500
        assert source.page_pixels(1500, 72) == (612, 792)
    assert time.perf_counter() - started < 1.0


def test_missing_file_is_not_a_document_error(tmp_path: Path) -> None:
    """Not the input's fault: it must stay retryable, not be recorded as bad input."""
    with pytest.raises(FileNotFoundError):
        _open(tmp_path / "gone.pdf", PDF)
    with pytest.raises(FileNotFoundError):
        _open(tmp_path / "gone.png", "image/png")


def test_unsupported_media_type(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("hello")
    assert _error(path, "text/plain").code == ErrorCode.UNSUPPORTED_TYPE


def test_close_is_idempotent(tmp_path: Path) -> None:
    source = _open(make_text_pdf(tmp_path / "a.pdf", ["a"]))
    source.close()
    source.close()


# --- images --------------------------------------------------------------------------------


def test_single_image(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    Image.new("L", (300, 200), 255).save(path, dpi=(150, 150))
    with _open(path) as source:
        assert isinstance(source, ImageSource)
        assert source.media_type == "image/png"
        assert source.page_count == 1
        assert source.page_pixels(1, 200) == (300, 200)  # images are never resampled
        assert source.page_dpi(1, 200) == 150
        assert source.page_size_points(1) == pytest.approx((144.0, 96.0))


def test_image_without_dpi_assumes_300(tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    Image.new("RGB", (600, 300), "white").save(path)
    with _open(path) as source:
        assert source.page_dpi(1, 200) == 300
        assert source.page_size_points(1) == pytest.approx((144.0, 72.0))


def test_multipage_tiff_frames_are_pages(tmp_path: Path) -> None:
    path = make_multipage_tiff(tmp_path / "scan.tif", ["one", "two", "three"], dpi=100)
    with _open(path) as source:
        assert source.page_count == 3
        assert source.page_pixels(3, 200) == (600, 400)
        assert source.page_dpi(2, 200) == 100


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_frames_are_pages(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"anim.{fmt.lower()}"
    frames = [Image.new("RGB", (40, 30), color) for color in ("red", "green", "blue")]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    with _open(path) as source:
        assert source.page_count == 3


def test_exif_rotation_swaps_page_sides(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (80, 40), "white").save(path, exif=exif)
    with _open(path) as source:
        assert source.page_pixels(1, 200) == (40, 80)


def test_png_header_claiming_huge_size_is_refused_without_decoding(tmp_path: Path) -> None:
    path = make_png_bomb(tmp_path / "bomb.png", 100_000, 100_000)
    assert path.stat().st_size < 200
    error = _error(path)
    assert error.code == ErrorCode.PAGE_TOO_LARGE


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_just_over_the_limit(tmp_path: Path) -> None:
    """Between 1x and 2x the limit Pillow only warns: our own check must refuse it."""
    path = make_png_bomb(tmp_path / "big.png", 12_000, 12_000)  # 144 MP
    error = _error(path, max_page_pixels=100_000_000)
    assert error.code == ErrorCode.PAGE_TOO_LARGE
    assert "12000 x 12000" in error.message
    with _open(path, max_page_pixels=200_000_000) as source:  # a larger limit allows it
        assert source.page_pixels(1, 200) == (12_000, 12_000)


def test_huge_tiff_frame_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    small, large = Image.new("1", (100, 100), 1), Image.new("1", (3000, 3000), 1)
    small.save(path, save_all=True, append_images=[large], compression="group4")
    with _open(path, max_page_pixels=1_000_000) as source:
        assert source.check_page(1) == (100, 100)
        with pytest.raises(DocumentError) as caught:
            source.check_page(2)
    assert caught.value.code == ErrorCode.PAGE_TOO_LARGE


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(
    ("name", "data", "media_type"),
    [
        ("bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
        ("bad.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 64, "image/jpeg"),
        ("bad.tif", b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 32, "image/tiff"),
        ("bad.gif", b"GIF89a\x01", "image/gif"),
        ("pdf-as-png.png", b"%PDF-1.4\n", "image/png"),
    ],
)
def test_corrupt_image(tmp_path: Path, name: str, data: bytes, media_type: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert _error(path, media_type).code == ErrorCode.CORRUPT


def test_too_many_frames(tmp_path: Path) -> None:
    path = make_multipage_tiff(tmp_path / "scan.tif", ["a", "b", "c"], size_px=(50, 50))
    assert _error(path, max_pages=2).code == ErrorCode.TOO_MANY_PAGES


def test_password_on_an_unencrypted_pdf_is_ignored(tmp_path: Path) -> None:
    with _open(make_text_pdf(tmp_path / "plain.pdf", ["x"]), password="unused") as source:
        assert source.page_count == 1


# --- hostile bytes -------------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_pdfs_only_ever_raise_document_errors(tmp_path: Path, data: st.DataObject) -> None:
    """Flip, cut or splice bytes of a valid PDF: opening and reading it either works
    or fails with a DocumentError, never with anything a worker would retry."""
    original = _SAMPLE_PDF.read_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        damaged = damaged[: data.draw(st.integers(1, len(damaged)))]
    path = tmp_path / "damaged.pdf"
    path.write_bytes(bytes(damaged))
    try:
        with _open(path, PDF) as source:
            for number in range(1, source.page_count + 1):
                source.check_page(number)
                extract_text_lines(path, number, 72)
                page_image_coverage(path, number)
    except DocumentError:
        pass


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")
@given(fmt=st.sampled_from(["PNG", "JPEG", "TIFF", "GIF", "WEBP", "BMP"]), data=st.data())
def test_damaged_images_only_ever_raise_document_errors(
    tmp_path: Path, fmt: str, data: st.DataObject
) -> None:
    original = _SAMPLE_IMAGES[fmt]
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        damaged[at] = data.draw(st.integers(0, 255))
    damaged = damaged[: data.draw(st.integers(1, len(damaged)))]
    path = tmp_path / f"damaged.{fmt.lower()}"
    path.write_bytes(bytes(damaged))
    try:
        media_type = sniff_media_type(bytes(damaged[:4096]))
        with _open(path, media_type) as source:
            for number in range(1, source.page_count + 1):
                render_page(path, media_type, number, 200, max_page_pixels=1_000_000)
    except DocumentError:
        pass


def _sample_pdf() -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="docintel-fuzz-"))
    return write_pdf(
        folder / "sample.pdf",
        [
            PdfPage(lines=["Hello fuzz", "Second line"]),
            PdfPage(image=Image.new("L", (40, 40), 128), lines=["1"], rotate=90),
        ],
    )


def _sample_images() -> dict[str, bytes]:
    samples = {}
    for fmt in ("PNG", "JPEG", "TIFF", "GIF", "WEBP", "BMP"):
        buffer = io.BytesIO()
        image = Image.new("RGB", (24, 16), (200, 30, 30))
        if fmt in ("TIFF", "GIF", "WEBP"):
            image.save(buffer, format=fmt, save_all=True, append_images=[image.rotate(90)])
        else:
            image.save(buffer, format=fmt)
        samples[fmt] = buffer.getvalue()
    return samples


_SAMPLE_PDF = _sample_pdf()
_SAMPLE_IMAGES = _sample_images()
