"""Build engines from typed configs and keep one instance per config per process.

Models load once per worker process and are reused by every task. When a task
asks for a different config (another checkpoint, dtype, device) the old one is
dropped first, so a long-lived worker never holds two sets of weights.
"""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Callable
from typing import Any

from docintel.engines.base import (
    EngineConfig,
    EngineError,
    ExtractionEngine,
    OcrEngine,
    RegionDetector,
)

Factory = Callable[[EngineConfig], Any]

# name -> "module:callable"; modules are imported on first use only.
_OCR_FACTORIES: dict[str, str] = {
    "rapidocr": "docintel.engines.rapidocr_engine:build",
    "florence2": "docintel.engines.florence2.engine:build_ocr",
}
_DETECTOR_FACTORIES: dict[str, str] = {
    "florence2": "docintel.engines.florence2.engine:build_detector",
}
_EXTRACTION_FACTORIES: dict[str, str] = {
    "cpu-tables": "docintel.engines.cpu_tables:build",
    "phi35v": "docintel.engines.phi35v.engine:build",
    "vlm": "docintel.engines.hf_vlm:build",
}
# What the `models` extra installs: an engine missing one is explained, not a traceback.
_MODEL_PACKAGES = frozenset({"torch", "transformers", "tokenizers", "safetensors"})

# The extraction engine name that stores chart regions without reading them.
NO_EXTRACTION = "none"

# Which queue an engine belongs on: CPU engines run next to rendering.
GPU_ENGINES = frozenset({"florence2", "phi35v", "vlm"})

# Engines in one slot replace each other; engines in different slots coexist.
_SLOT = {"ocr": "page", "detector": "page", "extraction": "region"}

_lock = threading.Lock()
_cache: dict[tuple[str, EngineConfig], Any] = {}


def register_ocr(name: str, target: str) -> None:
    _OCR_FACTORIES[name] = target


def register_detector(name: str, target: str) -> None:
    _DETECTOR_FACTORIES[name] = target


def has_region_detector(name: str) -> bool:
    return name in _DETECTOR_FACTORIES


def available_ocr_engines() -> list[str]:
    return sorted(_OCR_FACTORIES)


def available_extraction_engines() -> list[str]:
    """Registered extraction engines, and ``none`` (regions stored unread)."""
    return sorted({*_EXTRACTION_FACTORIES, NO_EXTRACTION})


def _resolve(table: dict[str, str], name: str, kind: str) -> Factory:
    # "package.module:factory" names an engine of one's own without registering it.
    try:
        target = name if ":" in name else table[name]
    except KeyError:
        raise EngineError(
            f"unknown {kind} engine {name!r}; choose one of {', '.join(sorted(table))}"
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        factory: Factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        if ":" not in name:
            # A package missing on this host (another worker may have it): still an
            # ImportError, saying how to get it.
            if isinstance(error, ImportError) and error.name in _MODEL_PACKAGES:
                raise ImportError(
                    f"the {name} engine needs the model packages ({error.name} is missing): "
                    "pip install 'docintel[models]'",
                    name=error.name,
                ) from error
            raise
        # A misspelt target of one's own: a configuration no worker can run.
        raise EngineError(f"cannot load the {kind} engine {name!r}: {error}") from error
    return factory


def _get(kind: str, table: dict[str, str], config: EngineConfig) -> Any:
    key = (kind, config)
    with _lock:
        engine = _cache.get(key)
        if engine is not None:
            return engine
        # Other configs of this engine go first, of every kind that shares its weights:
        # a worker must never hold the old set beside the new one.
        stale = [k for k in _cache if k[1] != config and _replaces(kind, config, k)]
        for k in stale:
            _release(_cache.pop(k))
        engine = _resolve(table, config.name, kind)(config)
        _cache[key] = engine
        return engine


def _replaces(kind: str, config: EngineConfig, cached: tuple[str, EngineConfig]) -> bool:
    """Whether building ``config`` for ``kind`` drops the ``cached`` engine.

    Another config of the same engine replaces it (an OCR model and its detector
    share one set of weights, so either kind replaces both). Different engines
    stay side by side: documents choose their own (rapidocr for one, florence2
    for the next; the CPU reader for tables beside a model for charts), and
    evicting one for the other would reload them in turn on every task.
    """
    return _SLOT[cached[0]] == _SLOT[kind] and cached[1].name == config.name


def get_ocr_engine(config: EngineConfig) -> OcrEngine:
    engine: OcrEngine = _get("ocr", _OCR_FACTORIES, config)
    return engine


def get_region_detector(config: EngineConfig) -> RegionDetector:
    detector: RegionDetector = _get("detector", _DETECTOR_FACTORIES, config)
    return detector


def get_extraction_engine(config: EngineConfig) -> ExtractionEngine:
    engine: ExtractionEngine = _get("extraction", _EXTRACTION_FACTORIES, config)
    return engine


def register_extraction(name: str, target: str) -> None:
    _EXTRACTION_FACTORIES[name] = target


def clear_engines() -> None:
    """Drop every cached engine and give their memory back (GPU memory included)."""
    with _lock:
        while _cache:
            _release(_cache.popitem()[1])


def _release(engine: Any) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()
    del engine
    gc.collect()
