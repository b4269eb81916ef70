"""What every engine speaks: plain images in, plain results out.

Engines are pure. They know nothing of the database, Celery or blob storage,
and heavy libraries (torch, transformers, onnxruntime) are imported inside the
engine modules only, so the API and CLI start fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from docintel.geometry import Region, TextLine


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


class EngineError(RuntimeError):
    """An engine could not be built or could not run (bad config, missing weights)."""
