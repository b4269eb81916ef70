"""What every engine speaks: plain images in, plain results out.

Engines are pure. They know nothing of the database, Celery or blob storage,
and heavy libraries (torch, transformers, onnxruntime) are imported inside the
engine modules only, so the API and CLI start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image

from docintel.document.charts import ChartData
from docintel.document.tables import Table
from docintel.geometry import Region, RegionKind, TextLine


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that decides which engine instance to build; hashable for caching."""

    name: str
    model: str = ""
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    threads: int | None = None  # CPU threads the engine may use; None: its own default
    options: tuple[tuple[str, Any], ...] = field(default=())

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)

    def int_option(self, key: str, default: int, minimum: int = 1) -> int:
        """An integer option, checked: a bad value is an ``EngineError`` naming it."""
        value = self.option(key, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise EngineError(f"option {key!r} must be an integer, got {value!r}") from None
        if number < minimum:
            raise EngineError(f"option {key!r} must be >= {minimum}, got {number}")
        return number


def rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def frozen_options(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Engine options from JSON settings as a hashable (cache key) tuple."""
    return tuple(sorted((k, _frozen(v)) for k, v in options.items()))


def _frozen(value: Any) -> Any:
    # EngineConfig is a cache key: JSON lists and objects become hashable tuples.
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


@runtime_checkable
class OcrEngine(Protocol):
    """Batch OCR: one list of lines per input image, polygons in that image's pixels."""

    name: str

    def recognize(self, images: Sequence[Image.Image]) -> list[list[TextLine]]: ...


@runtime_checkable
class RegionDetector(Protocol):
    """Batch table/chart detection: one list of regions per input image."""

    name: str

    def detect(self, images: Sequence[Image.Image]) -> list[list[Region]]: ...


@dataclass(frozen=True, slots=True)
class RegionInput:
    """One table or chart region to extract, cut out of its page.

    ``lines`` are the page's lines (text layer or OCR) whose centres fall inside
    the region, with polygons in the crop's pixels; ``exact_boxes`` when they
    come from a text layer (boxes that fit the text, unlike an OCR engine's).
    """

    kind: RegionKind
    image: Image.Image
    lines: tuple[TextLine, ...]
    exact_boxes: bool = False


@dataclass(frozen=True, slots=True)
class RegionResult:
    """What an engine made of one region.

    ``status``: ``done`` (``table`` or ``chart`` set), ``failed`` (``error`` says
    why; ``raw`` keeps what the engine produced) or ``no_engine`` (the engine
    cannot read this kind; ``title`` still says what the region is).
    Boxes in ``table`` are in the crop's pixels.
    """

    status: Literal["done", "failed", "no_engine"]
    table: Table | None = None
    chart: ChartData | None = None
    title: str | None = None
    raw: str | None = None
    error: str | None = None
    model: str | None = None
    prompt_version: str | None = None


@runtime_checkable
class ExtractionEngine(Protocol):
    """Batch extraction: one result per region, regions from any number of pages."""

    name: str

    def extract(self, regions: Sequence[RegionInput]) -> list[RegionResult]: ...


class EngineError(RuntimeError):
    """An engine could not be built or could not run (bad config, missing weights)."""
