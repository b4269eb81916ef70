"""RapidOCR on CPU: text lines with quadrilaterals, for embedded mode and CPU workers.

RapidOCR (PP-OCR detection, line classifier and recognizer as ONNX models shipped in
the wheel) runs offline. ``rapidocr`` and with it onnxruntime are imported inside
:func:`build` only, so importing this module stays cheap.

Pages scanned sideways or upside down are handled here (see
:meth:`RapidOcrEngine._correction`): the engine finds the quarter turn that makes the
page upright, reads the upright page and maps every polygon back to the input
image, so callers always get polygons in the pixels of the image they passed.

Options (``EngineConfig.options``):

``threads``             onnxruntime intra-op threads per model (default: ``EngineConfig.threads``,
                        else onnxruntime's choice: every core)
``detect_orientation``  look for pages turned by 90/180/270 degrees (default true)
``use_cls``             RapidOCR's per-line 0/180 classifier during recognition (default false:
                        the page-level check below handles turned pages, and the small
                        classifier flips some upright lines into garbage on real scans)
``text_score``          drop lines recognized with a lower confidence (default 0.5)
``max_side_len``        larger images are shrunk to this longest side first (default 2000)
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from docintel.document import rotation as orientation
from docintel.document.rotation import QuarterTurn
from docintel.engines.base import EngineConfig, EngineError
from docintel.geometry import Polygon, TextLine

_OPTIONS = frozenset({"threads", "detect_orientation", "use_cls", "text_score", "max_side_len"})

# RapidOCR turns a line crop 90 degrees before recognition when it is this much taller
# than wide; the orientation check must see the crops the same way.
_VERTICAL_RATIO = 1.5
# Only clearly elongated lines tell which way text runs; short words are nearly square.
_ELONGATED_RATIO = 2.0
# How many of the longest lines the orientation check looks at.
_CLS_SAMPLE = 6
_REC_SAMPLE = 3
# The line classifier is decisive outside this band; inside it the recognizer decides.
_CLS_UPRIGHT_BELOW = 0.2
_CLS_FLIPPED_ABOVE = 0.8
# RapidOCR's detector scales the short side of an image up to 736 pixels; a short strip
# (one line of text) blown up six times falls apart into overlapping pieces. Padding
# the short side to this length first keeps the upscaling below 3x.
_MIN_DETECT_SIDE = 256
# A corrected page that scores below this share of the first pass triggers a second look.
_FALLBACK_RATIO = 0.9


@dataclass(frozen=True, slots=True)
class _Settings:
    threads: int | None = None
    detect_orientation: bool = True
    use_cls: bool = False
    text_score: float = 0.5
    max_side_len: int = 2000


@dataclass(frozen=True, slots=True)
class _Line:
    """One RapidOCR line in the frame of the image it was read from."""

    points: tuple[tuple[float, float], ...]  # tl, tr, br, bl as RapidOCR orders them
    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class _Pass:
    """One OCR run over the input turned counter-clockwise by ``angle``."""

    angle: QuarterTurn
    lines: list[_Line]

    @property
    def score(self) -> float:
        # Confident characters: a page read the right way up yields its text at a
        # higher confidence than any wrong orientation. Squared, because a wrong turn
        # can yield more characters, of garbage: turned over, a page in a script the
        # recognizer does not know (Hebrew, Arabic) read as many more glyphs at 0.76
        # as its figures upright at 0.95, and was flipped.
        return sum(line.confidence**2 * len(line.text.strip()) for line in self.lines)


def build(config: EngineConfig) -> RapidOcrEngine:
    settings = _parse_options(config)
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:  # pragma: no cover - rapidocr is a core dependency
        raise EngineError(f"the rapidocr engine needs the rapidocr package: {exc}") from exc

    params: dict[str, Any] = {
        # Its warnings are about pages, not about RapidOCR ("the text detection result
        # is empty" on every blank page): noise on the CLI's stderr, not news.
        "Global.log_level": "error",
        "Global.text_score": settings.text_score,
        "Global.max_side_len": settings.max_side_len,
    }
    if settings.threads is not None:
        # RapidOCR silently ignores a count above the number of CPUs (and then uses all
        # of them), which is the opposite of what someone limiting threads wants.
        threads = min(settings.threads, os.cpu_count() or 1)
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
    try:
        ocr = RapidOCR(params=params)
    except Exception as exc:
        raise EngineError(f"could not start RapidOCR: {exc}") from exc
    return RapidOcrEngine(ocr, settings)


def _parse_options(config: EngineConfig) -> _Settings:
    unknown = sorted(key for key, _ in config.options if key not in _OPTIONS)
    if unknown:
        raise EngineError(
            f"unknown rapidocr option(s) {', '.join(unknown)}; known: {', '.join(sorted(_OPTIONS))}"
        )
    threads = config.option("threads", config.threads)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise EngineError(f"rapidocr option threads must be a positive integer, got {threads!r}")
    text_score = _number(config, "text_score", 0.5)
    if not 0.0 <= text_score <= 1.0:
        raise EngineError(f"rapidocr option text_score must lie in [0, 1], got {text_score}")
    max_side_len = int(_number(config, "max_side_len", 2000))
    if max_side_len < 32:
        raise EngineError(f"rapidocr option max_side_len is too small: {max_side_len}")
    return _Settings(
        threads=threads,
        detect_orientation=_flag(config, "detect_orientation", True),
        use_cls=_flag(config, "use_cls", False),
        text_score=text_score,
        max_side_len=max_side_len,
    )


def _number(config: EngineConfig, key: str, default: float) -> float:
    value = config.option(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"rapidocr option {key} must be a number, got {value!r}")
    return float(value)


def _flag(config: EngineConfig, key: str, default: bool) -> bool:
    # Strict on purpose: bool("false") is True.
    value = config.option(key, default)
    if not isinstance(value, bool):
        raise EngineError(f"rapidocr option {key} must be true or false, got {value!r}")
    return value


class RapidOcrEngine:
    """Batch OCR with RapidOCR; one instance per worker process, reused by every task."""

    name = "rapidocr"

    def __init__(self, ocr: Any, settings: _Settings) -> None:
        self._ocr: Any = ocr
        self._settings = settings
        # RapidOCR keeps per-call flags (use_det/use_cls/use_rec) on the instance, so two
        # threads calling it at once would step on each other.
        self._lock = threading.Lock()

    def recognize(self, images: Sequence[Image.Image]) -> list[list[TextLine]]:
        with self._lock:
            return [self._recognize_one(image) for image in images]

    def close(self) -> None:
        with self._lock:
            self._ocr = None

    # -- one page -------------------------------------------------------------------

    def _recognize_one(self, image: Image.Image) -> list[TextLine]:
        width, height = image.size
        if width < 1 or height < 1:
            return []
        rgb = _to_rgb(image)
        first = self._read(rgb, 0)
        if not first.lines or not self._settings.detect_orientation:
            return _to_text_lines(first, width, height)

        correction = self._correction(rgb, first)
        if correction == 0:
            return _to_text_lines(first, width, height)

        best = self._read(rgb, correction)
        if best.score < _FALLBACK_RATIO * first.score:
            # The turn we chose reads clearly worse than the page as it came, so the
            # check was fooled. (Merely equal is possible with use_cls, whose line
            # classifier rescues many upside-down lines in the first pass.) The opposite
            # turn is the only other candidate the geometry allows: 90 vs 270 for a
            # sideways page, otherwise 180 vs upright.
            opposite = orientation.normalize_angle(correction + 180)
            other = first if opposite == 0 else self._read(rgb, opposite)
            if other.score > best.score:
                best = other
        return _to_text_lines(best, width, height)

    def _read(self, rgb: Image.Image, angle: QuarterTurn) -> _Pass:
        turned = _pad_small(orientation.rotate_image(rgb, angle))
        out = self._call(_to_bgr(turned), det=True, cls=self._settings.use_cls, rec=True)
        boxes = getattr(out, "boxes", None)
        texts = getattr(out, "txts", None)
        scores = getattr(out, "scores", None)
        if boxes is None or texts is None or scores is None:
            return _Pass(angle, [])
        lines = [
            _Line(
                points=tuple((float(x), float(y)) for x, y in np.asarray(box).reshape(4, 2)),
                text=str(text),
                confidence=min(max(float(score), 0.0), 1.0),
            )
            for box, text, score in zip(boxes, texts, scores, strict=True)
            if str(text).strip()
        ]
        return _Pass(angle, lines)

    def _call(self, bgr: np.ndarray, *, det: bool, cls: bool, rec: bool) -> Any:
        if self._ocr is None:
            raise EngineError("the rapidocr engine was closed")
        # Always pass every flag: RapidOCR remembers the last call's flags.
        return self._ocr(bgr, use_det=det, use_cls=cls, use_rec=rec)

    # -- orientation ----------------------------------------------------------------

    def _correction(self, rgb: Image.Image, first: _Pass) -> QuarterTurn:
        """The counter-clockwise quarter turn that makes this page upright.

        Costs almost nothing on an upright page: the geometry of the boxes found by the
        first pass says whether lines run sideways, and RapidOCR's tiny line classifier,
        run on a handful of the longest lines, says whether they read upside down. Only
        when the classifier is unsure does the recognizer read those few lines both ways
        round and compare its confidence.
        """
        horizontal: list[tuple[float, _Line]] = []
        vertical: list[tuple[float, _Line]] = []
        for line in first.lines:
            along, across = _edge_lengths(line.points)
            long_side, short_side = max(along, across), min(along, across)
            if long_side < _ELONGATED_RATIO * max(short_side, 1.0):
                continue
            target = vertical if across >= _VERTICAL_RATIO * along else horizontal
            target.append((long_side, line))
        if not horizontal and not vertical:
            return 0  # only short words: nothing reliable to judge by
        is_vertical = sum(w for w, _ in vertical) > sum(w for w, _ in horizontal)
        sample = sorted(vertical if is_vertical else horizontal, key=lambda item: -item[0])
        crops = [(_crop_line(rgb, line.points), weight) for weight, line in sample[:_CLS_SAMPLE]]
        upside_down = self._reads_upside_down(crops)
        return orientation.correction_for(is_vertical, upside_down)

    def _reads_upside_down(self, crops: list[tuple[Image.Image, float]]) -> bool:
        vote = self._classifier_vote(crops)
        if vote is not None and vote <= _CLS_UPRIGHT_BELOW:
            return False
        if vote is not None and vote >= _CLS_FLIPPED_ABOVE:
            return True
        as_is = flipped = 0.0
        for crop, _ in crops[:_REC_SAMPLE]:
            as_is += self._rec_confidence(crop)
            flipped += self._rec_confidence(crop.transpose(Image.Transpose.ROTATE_180))
        return flipped > as_is

    def _classifier_vote(self, crops: list[tuple[Image.Image, float]]) -> float | None:
        """Weighted share of the sample the 0/180 line classifier calls upside down."""
        total = weight_sum = 0.0
        for crop, weight in crops:
            out = self._call(_to_bgr(crop), det=False, cls=True, rec=False)
            results = getattr(out, "cls_res", None)
            if not results:
                continue
            label, score = results[0]
            p_flipped = float(score) if "180" in str(label) else 1.0 - float(score)
            total += weight * p_flipped
            weight_sum += weight
        return total / weight_sum if weight_sum else None

    def _rec_confidence(self, crop: Image.Image) -> float:
        out = self._call(_to_bgr(crop), det=False, cls=False, rec=True)
        scores = getattr(out, "scores", None)
        return float(scores[0]) if scores else 0.0


# -- helpers ------------------------------------------------------------------------


def _to_text_lines(result: _Pass, width: int, height: int) -> list[TextLine]:
    lines = []
    for line in result.lines:
        flat = [c for point in line.points for c in point]
        polygon = orientation.unrotate_polygon(flat, width, height, result.angle)
        lines.append(TextLine(line.text, _clamp_polygon(polygon, width, height), line.confidence))
    return lines


def _clamp_polygon(polygon: Polygon, width: int, height: int) -> Polygon:
    values = [
        min(max(v, 0.0), float(width if i % 2 == 0 else height)) for i, v in enumerate(polygon)
    ]
    return (
        values[0],
        values[1],
        values[2],
        values[3],
        values[4],
        values[5],
        values[6],
        values[7],
    )


def _edge_lengths(points: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """Lengths of the top edge (along x) and the right edge (along y) of a box."""
    (x0, y0), (x1, y1), (x2, y2) = points[0], points[1], points[2]
    return math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x1, y2 - y1)


def _crop_line(rgb: Image.Image, points: tuple[tuple[float, float], ...]) -> Image.Image:
    """Cut a line out along its box, the way RapidOCR does before classifying it."""
    (tlx, tly), (trx, try_), (brx, bry), (blx, bly) = points
    width = max(math.hypot(trx - tlx, try_ - tly), math.hypot(brx - blx, bry - bly))
    height = max(math.hypot(blx - tlx, bly - tly), math.hypot(brx - trx, bry - try_))
    size = (max(int(width), 1), max(int(height), 1))
    # PIL's QUAD wants the source corners as upper-left, lower-left, lower-right, upper-right.
    quad = (tlx, tly, blx, bly, brx, bry, trx, try_)
    crop = rgb.transform(size, Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)
    if size[1] >= _VERTICAL_RATIO * size[0]:
        crop = crop.transpose(Image.Transpose.ROTATE_90)
    return crop


def _pad_small(rgb: Image.Image) -> Image.Image:
    """Pad a short side up to ``_MIN_DETECT_SIDE`` at the right/bottom (coordinates keep).

    The padding takes the colour of the image's border, so it adds no edge that could
    look like text.
    """
    width, height = rgb.size
    if min(width, height) >= _MIN_DETECT_SIDE:
        return rgb
    pixels = np.asarray(rgb)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = tuple(int(c) for c in np.median(border, axis=0))
    canvas = Image.new("RGB", (max(width, _MIN_DETECT_SIDE), max(height, _MIN_DETECT_SIDE)), colour)
    canvas.paste(rgb, (0, 0))
    return canvas


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; transparent areas become white paper."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Deep grayscale (16-bit scans, TIFF): PIL's own conversion clips at 255.
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        gray = ((values - low) * scale).round().astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("RGB")
    return image.convert("RGB")


def _to_bgr(rgb: Image.Image) -> np.ndarray:
    # RapidOCR treats a 3-channel array as OpenCV's BGR order.
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
