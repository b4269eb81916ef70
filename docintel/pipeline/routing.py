"""Which engines read a document, and on which queue its pages wait for them.

The settings name the deployment's engines; a document may choose others
(options ``ocr_engine``, ``table_engine``, ``chart_engine``). A page that
waits for OCR or extraction records the queue whose workers run what it needs
(``pages.queue``): ``gpu`` when a model engine reads it, else ``cpu`` beside
rendering. A batch task claims only pages of its own queue, so a CPU worker
never takes a page that needs a GPU model, and a GPU batch may hold pages of
documents with different engines (each engine runs on its own pages).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from docintel.engines.base import EngineConfig, frozen_options
from docintel.engines.registry import (
    GPU_ENGINES,
    NO_EXTRACTION,
    available_extraction_engines,
    available_ocr_engines,
)
from docintel.geometry import RegionKind
from docintel.models import PageStatus
from docintel.settings import Settings

CPU, GPU = "cpu", "gpu"
ENGINE_OPTIONS = {"ocr": "ocr_engine", "table": "table_engine", "chart": "chart_engine"}


def engine_choice_error(options: dict[str, Any]) -> str | None:
    """Why a document's engine options cannot be taken, or None.

    Only registered names: a ``module:callable`` target would let any client
    make a worker import code of its choosing.
    """
    for kind, option in ENGINE_OPTIONS.items():
        if option not in options:
            continue
        choices = available_ocr_engines() if kind == "ocr" else available_extraction_engines()
        if options[option] not in choices:
            return f"{option} must be one of {', '.join(choices)}"
    return None


def ocr_engine_for(settings: Settings, options: dict[str, Any]) -> str:
    return str(options.get("ocr_engine") or settings.ocr_engine)


def extraction_engine_for(settings: Settings, options: dict[str, Any], kind: RegionKind) -> str:
    default = settings.table_engine if kind == "table" else settings.chart_engine
    return str(options.get(ENGINE_OPTIONS[kind]) or default)


def engine_queue(name: str) -> str:
    return GPU if name in GPU_ENGINES else CPU


def extract_queue(settings: Settings, options: dict[str, Any], kinds: Iterable[RegionKind]) -> str:
    """``gpu`` if a model engine reads one of the page's region kinds, else ``cpu``."""
    names = {extraction_engine_for(settings, options, kind) for kind in set(kinds)}
    return GPU if names & GPU_ENGINES else CPU


def default_queue(settings: Settings, status: PageStatus) -> str:
    """Where pages that recorded no queue (left waiting by an older version) wait."""
    if status == PageStatus.OCR:
        return engine_queue(settings.ocr_engine)
    return extract_queue(settings, {}, ("table", "chart"))


def batch_size(settings: Settings, status: PageStatus, queue: str) -> int:
    """Pages one batch task claims: a GPU model batches them, a CPU engine takes one."""
    if queue != GPU:
        return 1
    return settings.gpu_batch_pages if status == PageStatus.OCR else settings.extract_batch_pages


def ocr_engine_config(settings: Settings, name: str | None = None) -> EngineConfig:
    """The config of OCR engine ``name`` (default: the deployment's).

    ``DOCINTEL_OCR_OPTIONS`` are the configured engine's own; another engine a
    document chose runs with its defaults, and its checkpoint from
    ``DOCINTEL_ENGINE_MODELS`` (else ``DOCINTEL_OCR_MODEL``, if it is a model).
    """
    name = name or settings.ocr_engine
    configured = name == settings.ocr_engine
    return _config(
        settings,
        name,
        model=settings.ocr_model if configured or name in GPU_ENGINES else "",
        options=settings.ocr_options if configured else {},
        batch_size=settings.ocr_batch_size,
        threads=settings.ocr_threads,
    )


def extraction_config(settings: Settings, name: str) -> EngineConfig | None:
    """The config of extraction engine ``name``; None when it is ``none`` (left unread)."""
    if name == NO_EXTRACTION:
        return None
    configured = name in (settings.table_engine, settings.chart_engine)
    return _config(
        settings,
        name,
        model=settings.extract_model if name in GPU_ENGINES else "",
        options=settings.extract_options if configured else {},
        batch_size=settings.extract_batch_size,
    )


def _config(
    settings: Settings,
    name: str,
    *,
    model: str,
    options: dict[str, Any],
    batch_size: int,
    threads: int | None = None,
) -> EngineConfig:
    """``DOCINTEL_ENGINE_MODELS`` names the checkpoint of any engine it lists."""
    return EngineConfig(
        name=name,
        model=settings.engine_models.get(name, model),
        device=settings.device,
        dtype=settings.dtype,
        batch_size=batch_size,
        threads=threads,
        options=frozen_options(options),
    )
