"""The RapidOCR engine on generated pages, and the quarter-turn geometry behind it.

Images are drawn here with PIL (no corpus files): a couple of sentences in a large
font, upright and turned by 90/180/270 degrees, with noise.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from docintel.document import rotation as orientation
from docintel.document.rotation import (
    correction_for,
    dominant_quarter_turn,
    nearest_quarter_turn,
    reading_angle,
    rotate_image,
    rotate_point,
    rotate_polygon,
    rotated_size,
    unrotate_point,
    unrotate_polygon,
)
from docintel.engines.base import EngineConfig, EngineError, OcrEngine
from docintel.engines.rapidocr_engine import RapidOcrEngine, build
from docintel.geometry import TextLine

SENTENCES = ("The quick brown fox jumps", "over the lazy dog 1234")
_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in _FONT_FILES:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    # Pillow >= 10.1 ships a scalable default font.
    return ImageFont.load_default(size=size)


def _page(
    sentences: tuple[str, ...] = SENTENCES, size: tuple[int, int] = (600, 200)
) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(36)
    for i, sentence in enumerate(sentences):
        draw.text((30, 40 + 70 * i), sentence, fill="black", font=font)
    return image


def _ink_box(image: Image.Image) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.asarray(image.convert("L")) < 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _with_noise(image: Image.Image, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.float64)
    noisy = pixels + rng.normal(0.0, 18.0, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _cer(found: str, expected: str) -> float:
    found, expected = " ".join(found.split()), " ".join(expected.split())
    return Levenshtein.distance(found, expected) / max(len(expected), 1)


def _text(lines: list[TextLine]) -> str:
    return "\n".join(line.text for line in lines)


def _assert_geometry(lines: list[TextLine], image: Image.Image, ink: tuple[int, ...]) -> None:
    """Polygons inside the image, together covering the ink and little else."""
    width, height = image.size
    margin = 20
    for line in lines:
        assert 0.0 <= line.confidence <= 1.0
        xs, ys = line.polygon[0::2], line.polygon[1::2]
        assert all(0 <= x <= width for x in xs) and all(0 <= y <= height for y in ys)
    x0 = min(line.bbox[0] for line in lines)
    y0 = min(line.bbox[1] for line in lines)
    x1 = max(line.bbox[2] for line in lines)
    y1 = max(line.bbox[3] for line in lines)
    ix0, iy0, ix1, iy1 = ink
    # The boxes contain the text ...
    assert x0 <= ix0 + 2 and y0 <= iy0 + 2 and x1 >= ix1 - 2 and y1 >= iy1 - 2
    # ... and hug it.
    assert x0 >= ix0 - margin and y0 >= iy0 - margin
    assert x1 <= ix1 + margin and y1 <= iy1 + margin


@pytest.fixture(scope="module")
def engine() -> Iterator[RapidOcrEngine]:
    built = build(EngineConfig(name="rapidocr"))
    yield built
    built.close()


# -- the engine ---------------------------------------------------------------------


def test_is_an_ocr_engine(engine: RapidOcrEngine) -> None:
    assert isinstance(engine, OcrEngine)
    assert engine.name == "rapidocr"


def test_reads_an_upright_page(engine: RapidOcrEngine) -> None:
    page = _page()
    [lines] = engine.recognize([page])
    assert _cer(_text(lines), "\n".join(SENTENCES)) < 0.1
    _assert_geometry(lines, page, _ink_box(page))
    for line in lines:
        # Clockwise from the text's top-left: the first edge runs left to right.
        assert nearest_quarter_turn(reading_angle(line.polygon)) == 0
        assert _signed_area(line.polygon) > 0


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_reads_a_turned_page_and_maps_polygons_back(engine: RapidOcrEngine, angle: int) -> None:
    turned = rotate_image(_page(), angle)
    ink = _ink_box(turned)
    noisy = _with_noise(turned, seed=angle)
    [lines] = engine.recognize([noisy])
    assert _cer(_text(lines), "\n".join(SENTENCES)) < 0.1
    assert _cer(lines[0].text, SENTENCES[0]) < 0.2  # reading order, not image order
    _assert_geometry(lines, noisy, ink)
    for line in lines:
        # Polygons start at the text's own top-left corner and run along the text,
        # which on this page runs `angle` degrees counter-clockwise.
        assert nearest_quarter_turn(reading_angle(line.polygon)) == angle
        assert _signed_area(line.polygon) > 0


def test_each_line_lies_where_its_text_was_drawn(engine: RapidOcrEngine) -> None:
    page = _page()
    angle = 90
    turned = rotate_image(page, angle)
    [lines] = engine.recognize([turned])
    draw = ImageDraw.Draw(Image.new("RGB", page.size))
    font = _font(36)
    for i, sentence in enumerate(SENTENCES):
        box = draw.textbbox((30, 40 + 70 * i), sentence, font=font)
        corners = [(box[0], box[1]), (box[2], box[3])]
        (ax, ay), (bx, by) = (rotate_point(x, y, *page.size, angle) for x, y in corners)
        expected = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
        line = min(lines, key=lambda candidate: _cer(candidate.text, sentence))
        found = line.bbox
        assert all(abs(f - e) <= 20 for f, e in zip(found, expected, strict=True)), (
            found,
            expected,
        )


def test_blank_page_gives_no_lines(engine: RapidOcrEngine) -> None:
    assert engine.recognize([Image.new("RGB", (600, 200), "white")]) == [[]]


def test_batch_keeps_image_order(engine: RapidOcrEngine) -> None:
    blank = Image.new("RGB", (300, 100), "white")
    results = engine.recognize([blank, _page(), blank])
    assert [len(r) > 0 for r in results] == [False, True, False]
    assert engine.recognize([]) == []


def _as_mode(mode: str) -> Image.Image:
    page = _page()
    if mode == "RGBA":
        # Black text on a transparent background: transparency must read as paper.
        alpha = Image.eval(page.convert("L"), lambda v: 255 - v)
        rgba = Image.new("RGBA", page.size, (0, 0, 0, 0))
        rgba.putalpha(alpha)
        return rgba
    if mode == "I;16":
        return Image.fromarray(np.asarray(page.convert("L"), dtype=np.uint16) * 257)
    return page.convert(mode)


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "I;16", "CMYK"])
def test_accepts_any_image_mode(engine: RapidOcrEngine, mode: str) -> None:
    image = _as_mode(mode)
    assert image.mode == mode
    [lines] = engine.recognize([image])
    assert _cer(_text(lines), "\n".join(SENTENCES)) < 0.1


def test_tiny_and_empty_images(engine: RapidOcrEngine) -> None:
    assert engine.recognize([Image.new("RGB", (0, 0))]) == [[]]
    assert engine.recognize([Image.new("L", (3, 2), 255)]) == [[]]


def test_orientation_check_can_be_switched_off() -> None:
    plain = build(EngineConfig(name="rapidocr", options=(("detect_orientation", False),)))
    turned = rotate_image(_page(), 180)
    [lines] = plain.recognize([turned])
    # Read as it comes, the upside-down page is garbage.
    assert _cer(_text(lines), "\n".join(SENTENCES)) > 0.3


def test_threads_option_and_close() -> None:
    engine = build(EngineConfig(name="rapidocr", options=(("threads", 1),)))
    [lines] = engine.recognize([_page(SENTENCES[:1], size=(600, 120))])
    assert _cer(_text(lines), SENTENCES[0]) < 0.1
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.recognize([_page()])


@pytest.mark.parametrize(
    "options",
    [
        (("thread", 2),),
        (("threads", 0),),
        (("threads", "4"),),
        (("threads", True),),
        (("text_score", 1.5),),
        (("max_side_len", 8),),
        (("max_side_len", "big"),),
        (("detect_orientation", "false"),),
    ],
)
def test_bad_options_are_refused(options: tuple[tuple[str, object], ...]) -> None:
    with pytest.raises(EngineError):
        build(EngineConfig(name="rapidocr", options=options))


def test_module_import_stays_light() -> None:
    # The API process may import engine modules for their names; onnxruntime must
    # only load when an engine is built.
    code = (
        "import sys, docintel.engines.rapidocr_engine\n"
        "heavy = {'rapidocr', 'onnxruntime', 'cv2'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- quarter-turn geometry ----------------------------------------------------------

angles = st.sampled_from([0, 90, 180, 270])
sizes = st.floats(min_value=1, max_value=5000, allow_nan=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(angles, sizes, sizes, unit, unit)
def test_unrotate_undoes_rotate(
    angle: int, width: float, height: float, u: float, v: float
) -> None:
    x, y = u * width, v * height
    rx, ry = rotate_point(x, y, width, height, angle)
    rw, rh = rotated_size(width, height, angle)
    assert -1e-6 <= rx <= rw + 1e-6 and -1e-6 <= ry <= rh + 1e-6
    bx, by = unrotate_point(rx, ry, width, height, angle)
    assert bx == pytest.approx(x, abs=1e-6) and by == pytest.approx(y, abs=1e-6)


@given(angles, sizes, sizes, st.lists(unit, min_size=8, max_size=8))
def test_polygon_round_trip_keeps_corner_order(
    angle: int, width: float, height: float, coords: list[float]
) -> None:
    polygon = tuple(c * (width if i % 2 == 0 else height) for i, c in enumerate(coords))
    turned = rotate_polygon(polygon, width, height, angle)
    back = unrotate_polygon(turned, width, height, angle)
    assert back == pytest.approx(polygon, abs=1e-6)
    # A rotation never mirrors: clockwise stays clockwise.
    assert _signed_area(turned) == pytest.approx(_signed_area(polygon), rel=1e-6, abs=1e-3)


@given(
    angles,
    st.integers(min_value=1, max_value=12),
    st.integers(min_value=1, max_value=12),
    st.data(),
)
def test_rotate_point_matches_pil_pixels(
    angle: int, width: int, height: int, data: st.DataObject
) -> None:
    i = data.draw(st.integers(min_value=0, max_value=width - 1))
    j = data.draw(st.integers(min_value=0, max_value=height - 1))
    image = Image.new("L", (width, height), 0)
    image.putpixel((i, j), 255)
    turned = rotate_image(image, angle)
    assert turned.size == rotated_size(width, height, angle)
    x, y = rotate_point(i + 0.5, j + 0.5, width, height, angle)
    assert turned.getpixel((int(x), int(y))) == 255


def test_quarter_turn_helpers() -> None:
    assert orientation.normalize_angle(-90) == 270
    assert orientation.normalize_angle(450) == 90
    with pytest.raises(ValueError):
        orientation.normalize_angle(45)
    assert reading_angle((0, 10, 100, 10, 100, 30, 0, 30)) == pytest.approx(0)
    # Text running up the page (the page was turned counter-clockwise).
    assert reading_angle((10, 100, 10, 0, 30, 0, 30, 100)) == pytest.approx(90)
    assert nearest_quarter_turn(359.0) == 0
    assert nearest_quarter_turn(181.0) == 180
    assert dominant_quarter_turn([(90.0, 5.0), (0.0, 3.0), (268.0, 1.0)]) == 90
    assert dominant_quarter_turn([]) == 0
    assert correction_for(vertical=False, upside_down=False) == 0
    assert correction_for(vertical=False, upside_down=True) == 180
    assert correction_for(vertical=True, upside_down=False) == 90
    assert correction_for(vertical=True, upside_down=True) == 270


def test_correction_makes_text_upright() -> None:
    """The turn from correction_for undoes the turn RapidOCR's crops reveal."""
    page = _page()
    for content_turn in (90, 180, 270):
        turned = rotate_image(page, content_turn)
        vertical = content_turn in (90, 270)
        # A crop of a vertical line is turned 90 degrees counter-clockwise by RapidOCR;
        # it then reads upright only when the page had been turned clockwise (270).
        upside_down = content_turn in (90, 180)
        fix = correction_for(vertical, upside_down)
        assert np.array_equal(np.asarray(rotate_image(turned, fix)), np.asarray(page))


def _signed_area(polygon: tuple[float, ...]) -> float:
    """Shoelace area; positive when the corners run clockwise on screen (y down)."""
    xs, ys = polygon[0::2], polygon[1::2]
    return 0.5 * sum(xs[k] * ys[(k + 1) % 4] - xs[(k + 1) % 4] * ys[k] for k in range(4))


def test_threads_come_from_the_config_unless_an_option_says_otherwise() -> None:
    from docintel.engines.rapidocr_engine import _parse_options

    assert _parse_options(EngineConfig(name="rapidocr")).threads is None
    assert _parse_options(EngineConfig(name="rapidocr", threads=1)).threads == 1
    both = EngineConfig(name="rapidocr", threads=1, options=(("threads", 2),))
    assert _parse_options(both).threads == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_page_in_a_script_the_recognizer_does_not_know_is_not_turned_over(
    engine: RapidOcrEngine, seed: int
) -> None:
    """Its figures read upright at 0.95; turned over, its labels give more glyphs of
    garbage at 0.76. Counting characters alone turned such pages over (a Hebrew report)."""
    from tests.fixtures.unknown_script import figures_with_labels

    image, figures = figures_with_labels(seed)
    text = " ".join(line.text for line in engine.recognize([image])[0])
    found = sum(figure in text for figure in figures)
    assert found >= 0.9 * len(figures), text
