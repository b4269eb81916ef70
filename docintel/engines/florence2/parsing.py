"""Turn Florence-2 generations into lines and boxes without ever raising.

The processor's ``post_process_generation`` is the reference parser, but a
generation cut by the token limit, a repetition loop or a malformed answer
can make it return labels full of ``<loc_*>`` tokens, boxes with NaNs, or
raise. One bad tile must not cost a page, so everything here degrades to
"what could be parsed", and a small regex parser stands in when the
processor fails.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docintel.geometry import BBox, Polygon

log = logging.getLogger(__name__)

OCR_TASK = "<OCR_WITH_REGION>"
OD_TASK = "<OD>"
OVD_TASK = "<OPEN_VOCABULARY_DETECTION>"

_LOC = re.compile(r"<loc_(\d+)>")
# Markup Florence-2 may emit inside answers; never part of recognised text.
_MARKUP = re.compile(
    r"</?s>|<pad>|<unk>|<loc_\d+>|</?(?:od|ocr|poly|cap|ncap|dcap|grounding|seg|"
    r"region_cap|region_to_desciption|proposal|and|box|bbox|obj|ground|sep)>"
)
_DANGLING = re.compile(r"<[a-z_/]*\d*$")
_QUANT_BINS = 1000


Quad = Polygon
Box = BBox


@dataclass(frozen=True, slots=True)
class ParsedLine:
    text: str
    quad: Quad


@dataclass(frozen=True, slots=True)
class ParsedBox:
    label: str
    bbox: Box


def _as_quad(v: Sequence[float]) -> Quad:
    return (v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])


def _as_box(v: Sequence[float]) -> Box:
    return (v[0], v[1], v[2], v[3])


def clean_generation(text: str) -> str:
    """Drop sequence markers and a token cut in half at the end of a truncated string."""
    text = text.replace("<pad>", "").replace("<s>", "").replace("</s>", "")
    return _DANGLING.sub("", text)


def clean_label(label: str) -> str:
    """Recognised text without any markup tokens or stray whitespace."""
    return " ".join(_MARKUP.sub(" ", label).split())


def _finite(values: Sequence[Any], count: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if len(out) != count or not all(math.isfinite(v) for v in out):
        return None
    return out


def _clamp(values: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
    w, h = size
    return tuple(min(max(v, 0.0), float(w if i % 2 == 0 else h)) for i, v in enumerate(values))


def _dequantize(bins: Sequence[int], size: tuple[int, int]) -> tuple[float, ...]:
    """Bin centers in pixels, the same convention as the processor (bins of 1/1000)."""
    w, h = size
    return tuple(
        (min(int(b), _QUANT_BINS - 1) + 0.5) * (w if i % 2 == 0 else h) / _QUANT_BINS
        for i, b in enumerate(bins)
    )


def fallback_parse_ocr(text: str, image_size: tuple[int, int]) -> list[ParsedLine]:
    """Own parser: text, then exactly 8 location tokens; anything else is skipped."""
    lines: list[ParsedLine] = []
    pending_text: list[str] = []
    locs: list[int] = []
    for piece in re.split(r"(<loc_\d+>)", clean_generation(text)):
        if not piece:  # between two adjacent location tokens
            continue
        match = _LOC.fullmatch(piece)
        if match is None:
            if locs:  # text after an incomplete box: that box is lost
                locs = []
                pending_text = []
            pending_text.append(piece)
            continue
        locs.append(int(match.group(1)))
        if len(locs) == 8:
            label = clean_label("".join(pending_text))
            if label:
                quad = _clamp(_dequantize(locs, image_size), image_size)
                lines.append(ParsedLine(label, _as_quad(quad)))
            locs, pending_text = [], []
    return lines


def parse_ocr(processor: Any, text: str, image_size: tuple[int, int]) -> list[ParsedLine]:
    """Lines of an ``<OCR_WITH_REGION>`` answer; coordinates in ``image_size`` pixels."""
    cleaned = clean_generation(text)
    try:
        answer = processor.post_process_generation(cleaned, task=OCR_TASK, image_size=image_size)
        result = answer[OCR_TASK]
        pairs = list(zip(result["labels"], result["quad_boxes"], strict=True))
    except Exception:  # the reference parser failing must not fail the tile
        log.warning("Florence-2 OCR output could not be parsed; using fallback", exc_info=True)
        return fallback_parse_ocr(cleaned, image_size)
    lines = []
    for label, quad in pairs:
        values = _finite(quad, 8)
        # Location tokens inside a label are leftovers of a broken box before
        # it; only the text after them belongs to this quad.
        text_clean = clean_label(_LOC.split(str(label))[-1])
        if values is None or not text_clean:
            continue
        lines.append(ParsedLine(text_clean, _as_quad(_clamp(values, image_size))))
    return lines


def fallback_parse_boxes(text: str, image_size: tuple[int, int]) -> list[ParsedBox]:
    """Own parser for detection answers: a label followed by groups of 4 location tokens."""
    boxes: list[ParsedBox] = []
    for match in re.finditer(r"([^<]*)((?:<loc_\d+>){4,})", clean_generation(text)):
        label = clean_label(match.group(1))
        bins = [int(b) for b in _LOC.findall(match.group(2))]
        for i in range(0, len(bins) - 3, 4):
            box = _clamp(_dequantize(bins[i : i + 4], image_size), image_size)
            boxes.append(ParsedBox(label, _as_box(box)))
    return boxes


def _polygon_bbox(polygon: Sequence[Any]) -> tuple[float, ...] | None:
    # Florence returns a list of polygons per instance, each a flat x,y list.
    points = [p for poly in polygon for p in (poly if isinstance(poly, list | tuple) else [poly])]
    values = _finite(points, len(points))
    if not values or len(values) < 4:
        return None
    xs, ys = values[0::2], values[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def parse_boxes(
    processor: Any, text: str, task: str, image_size: tuple[int, int]
) -> list[ParsedBox]:
    """Labelled boxes of an ``<OD>`` or ``<OPEN_VOCABULARY_DETECTION>`` answer."""
    cleaned = clean_generation(text)
    try:
        result = processor.post_process_generation(cleaned, task=task, image_size=image_size)[task]
        labels = result.get("labels", result.get("bboxes_labels", []))
        pairs: list[tuple[Any, Any]] = list(zip(labels, result["bboxes"], strict=True))
        for label, polygon in zip(
            result.get("polygons_labels", []), result.get("polygons", []), strict=True
        ):
            pairs.append((label, _polygon_bbox(polygon)))
    except Exception:
        log.warning("Florence-2 detection output unparseable; using fallback", exc_info=True)
        return fallback_parse_boxes(cleaned, image_size)
    boxes = []
    for label, bbox in pairs:
        values = _finite(bbox, 4) if bbox is not None else None
        if values is None:
            continue
        boxes.append(ParsedBox(clean_label(str(label)), _as_box(_clamp(values, image_size))))
    return boxes
