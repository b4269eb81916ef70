"""Text-layer lines in page-image pixels, and the verdict that decides OCR or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from docintel.document.render import render_page
from docintel.document.textlayer import (
    extract_text_lines,
    page_image_coverage,
    text_layer_quality,
)
from docintel.errors import DocumentError, ErrorCode
from docintel.geometry import TextLine
from tests.fixtures.documents import (
    PdfPage,
    make_encrypted_pdf,
    make_image_page_pdf,
    make_mixed_pdf,
    make_scanned_pdf,
    make_text_pdf,
    render_text_image,
    write_pdf,
)

PDF = "application/pdf"


def _ink(path: Path, number: int, dpi: int) -> np.ndarray:
    image = render_page(path, PDF, number, dpi, max_page_pixels=80_000_000).image
    return np.asarray(image.convert("L")) < 160


def _assert_boxes_match_ink(path: Path, number: int, dpi: int) -> list[TextLine]:
    """Every line box holds ink, and all ink on the page lies in some line box."""
    lines = extract_text_lines(path, number, dpi)
    ink = _ink(path, number, dpi)
    height, width = ink.shape
    covered = np.zeros_like(ink)
    for line in lines:
        x0, y0, x1, y1 = line.bbox
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, line
        box = (slice(max(0, int(y0) - 1), int(y1) + 2), slice(max(0, int(x0) - 1), int(x1) + 2))
        assert ink[box].any(), f"no ink in the box of {line.text!r}"
        covered[box] = True
    assert ink.any()
    assert not (ink & ~covered).any(), "ink outside every line box"
    return lines


def test_exact_lines_and_positions(tmp_path: Path) -> None:
    path = make_text_pdf(
        tmp_path / "doc.pdf",
        ["Invoice 2024-001\nTotal: 1,234.56 EUR\nCafé \u2013 naïve € (x) \\ y", "Second page"],
    )
    lines = _assert_boxes_match_ink(path, 1, 100)
    assert [line.text for line in lines] == [
        "Invoice 2024-001",
        "Total: 1,234.56 EUR",
        "Café \u2013 naïve € (x) \\ y",
    ]
    assert all(line.confidence == 1.0 for line in lines)
    # First baseline: 72 pt from the left, 72 + 12 pt below the top; at 100 dpi x 100/72.
    x0, y0, _, y1 = lines[0].bbox
    assert x0 == pytest.approx(100, abs=2)
    assert y0 < 84 * 100 / 72 < y1
    polygon = lines[0].polygon  # clockwise from top-left
    assert polygon[0] < polygon[2] and polygon[5] > polygon[3]
    assert [line.text for line in extract_text_lines(path, 2, 100)] == ["Second page"]


def test_boxes_scale_with_dpi(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "doc.pdf", ["Scale me"])
    (low,) = extract_text_lines(path, 1, 72)
    (high,) = extract_text_lines(path, 1, 144)
    assert high.polygon == pytest.approx([2 * v for v in low.polygon])


def test_wide_gaps_split_lines_like_table_cells(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "table.pdf", ["Item" + " " * 40 + "Amount\nTea  for  two"])
    assert [line.text for line in _assert_boxes_match_ink(path, 1, 72)] == [
        "Item",
        "Amount",
        "Tea for two",
    ]


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_rotated_pages_match_the_rendered_image(tmp_path: Path, rotate: int) -> None:
    page = PdfPage(lines=["Rotated page text", "Second line"], left=200, top=30, rotate=rotate)
    path = write_pdf(tmp_path / "rot.pdf", [page])
    lines = _assert_boxes_match_ink(path, 1, 72)
    assert sorted(line.text for line in lines) == ["Rotated page text", "Second line"]
    line = next(line for line in lines if line.text == "Rotated page text")
    x0, y0, x1, y1 = line.bbox
    if rotate in (90, 270):
        assert y1 - y0 > x1 - x0  # the text runs down (90) or up (270) the image
    else:
        assert x1 - x0 > y1 - y0
    # The polygon starts at the text's own top-left corner, wherever that lands.
    start = {0: (x0, y0), 90: (x1, y0), 180: (x1, y1), 270: (x0, y1)}[rotate]
    assert line.polygon[:2] == pytest.approx(start)
    # ... and the page's first line is where the page's top edge went.
    expected_edge = {0: "top", 90: "right", 180: "bottom", 270: "left"}[rotate]
    width, height = (792, 612) if rotate in (90, 270) else (612, 792)
    distances = {"top": y0, "right": width - x1, "bottom": height - y1, "left": x0}
    assert min(distances, key=distances.__getitem__) == expected_edge


def test_crop_box_offset(tmp_path: Path) -> None:
    page = PdfPage(
        lines=["Inside the crop box", "Also inside"],
        origin=(100, 50),
        cropbox=(150, 300, 560, 830),
        left=80,
        top=40,
    )
    page_outside = PdfPage(lines=["Cropped away"], cropbox=(0, 0, 300, 300))
    path = write_pdf(tmp_path / "crop.pdf", [page, page_outside])
    lines = _assert_boxes_match_ink(path, 1, 100)
    assert [line.text for line in lines] == ["Inside the crop box", "Also inside"]
    assert extract_text_lines(path, 2, 100) == []  # text outside the crop box is not on the image


def test_invisible_ocr_layer_over_a_scan(tmp_path: Path) -> None:
    text = "\n".join(f"Scanned line number {n} with several words" for n in range(1, 16))
    path = make_scanned_pdf(tmp_path / "ocr.pdf", [text], dpi=72, invisible_text=True)
    lines = extract_text_lines(path, 1, 72)
    assert [line.text for line in lines] == text.split("\n")
    verdict = text_layer_quality(lines, 612 * 792, page_image_coverage(path, 1))
    assert verdict.use_text_layer, verdict.reason


def test_encrypted_pdf_text_with_password(tmp_path: Path) -> None:
    path = make_encrypted_pdf(tmp_path / "locked.pdf", ["Secret text"], user_password="pw")
    with pytest.raises(DocumentError) as caught:
        extract_text_lines(path, 1, 72)
    assert caught.value.code == ErrorCode.ENCRYPTED
    assert [line.text for line in extract_text_lines(path, 1, 72, password="pw")] == ["Secret text"]


# --- image coverage ------------------------------------------------------------------------


def test_image_coverage(tmp_path: Path) -> None:
    scan = render_text_image("text", (306, 396), dpi=36)  # 36 dpi over a full page
    path = write_pdf(
        tmp_path / "img.pdf",
        [
            PdfPage(lines=["no images"]),
            PdfPage(image=scan),  # full page
            PdfPage(image=scan, image_rect=(0, 396, 612, 792)),  # top half
            # inside a Form XObject whose matrix places it: 306 x 396 pt = a quarter
            PdfPage(image=scan, image_rect=(306, 0, 612, 396), image_in_form=True),
            # a 2 x 2 pixel background stretched over the page cannot hold text
            PdfPage(image=Image.new("L", (2, 2), 230), lines=["slide title"]),
        ],
    )
    coverage = [page_image_coverage(path, n) for n in range(1, 6)]
    assert coverage == pytest.approx([0.0, 1.0, 0.5, 0.25, 0.0], abs=0.02)


# --- verdict -------------------------------------------------------------------------------


def _line(text: str, box: tuple[float, float, float, float] = (0, 0, 100, 10)) -> TextLine:
    x0, y0, x1, y1 = box
    return TextLine(text, (x0, y0, x1, y0, x1, y1, x0, y1), 1.0)


def test_verdict_real_text(tmp_path: Path) -> None:
    path = make_text_pdf(tmp_path / "doc.pdf", ["A real born-digital page\nwith two lines"])
    lines = extract_text_lines(path, 1, 72)
    verdict = text_layer_quality(lines, 612 * 792, page_image_coverage(path, 1))
    assert verdict.use_text_layer
    assert verdict.chars == len("Arealborn-digitalpagewithtwolines")


def test_verdict_empty_page(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "empty.pdf", [PdfPage()])
    lines = extract_text_lines(path, 1, 72)
    assert lines == []
    verdict = text_layer_quality(lines, 612 * 792, page_image_coverage(path, 1))
    assert not verdict.use_text_layer
    assert verdict.reason == "no text layer"


def test_verdict_whitespace_only() -> None:
    assert not text_layer_quality([_line("   "), _line("\t")], 10_000).use_text_layer


def test_verdict_image_only_page(tmp_path: Path) -> None:
    path = make_scanned_pdf(tmp_path / "scan.pdf", ["Only pixels here"], dpi=50)
    lines = extract_text_lines(path, 1, 72)
    coverage = page_image_coverage(path, 1)
    assert lines == [] and coverage == pytest.approx(1.0)
    assert not text_layer_quality(lines, 612 * 792, coverage).use_text_layer


def test_verdict_page_number_over_a_full_page_image(tmp_path: Path) -> None:
    path = make_image_page_pdf(tmp_path / "img.pdf", text_lines=["Page 12"])
    lines = extract_text_lines(path, 1, 72)
    assert [line.text for line in lines] == ["Page 12"]
    verdict = text_layer_quality(lines, 612 * 792, page_image_coverage(path, 1))
    assert not verdict.use_text_layer
    assert "scanned" in verdict.reason


def test_verdict_mixed_document(tmp_path: Path) -> None:
    path = make_mixed_pdf(tmp_path / "mixed.pdf", ["Digital page one", "Scan", "Digital 3"], {2})
    verdicts = [
        text_layer_quality(extract_text_lines(path, n, 72), 612 * 792, page_image_coverage(path, n))
        for n in (1, 2, 3)
    ]
    assert [v.use_text_layer for v in verdicts] == [True, False, True]


@pytest.mark.parametrize(
    "text",
    [
        "\ufffd\ufffd\ufffd\ufffd \ufffd\ufffd\ufffd words",  # no Unicode map for the font
        "\ue000\ue001\ue002\ue003\ue004 abc",  # private-use code points
        "\x01\x02\x03\x04\x05\x06 abc",  # control codes
        "•••• ---- ==== ++++ |||| ab",  # mostly symbols
    ],
)
def test_verdict_garbage(text: str) -> None:
    verdict = text_layer_quality([_line(text)] * 20, 100_000)
    assert not verdict.use_text_layer
    assert verdict.reason.startswith("garbage")


def test_verdict_tolerates_a_few_odd_characters() -> None:
    lines = [_line("\uf0b7 A bullet from a symbol font, then ordinary words")] * 10
    assert text_layer_quality(lines, 100_000).use_text_layer


def test_verdict_text_heavy_page_over_an_image_keeps_the_layer() -> None:
    lines = [
        _line("Many words of real text " * 3, (0, 20 * n, 900, 20 * n + 16)) for n in range(40)
    ]
    verdict = text_layer_quality(lines, 1000 * 1000, image_coverage=1.0)
    assert verdict.use_text_layer
    assert verdict.text_coverage == pytest.approx(40 * 900 * 16 / 1e6)
