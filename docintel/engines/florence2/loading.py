"""Load a Florence-2 checkpoint once per process and share it between engines.

The OCR engine and the region detector usually run the same checkpoint; they
each hold a reference to one loaded model, keyed by (checkpoint, device,
dtype, attention). When the last holder lets go (an engine's ``close()``,
which the registry calls when the config changes) the weights are dropped and
the CUDA cache is emptied, so a long-lived worker never holds two copies.

torch and transformers are imported inside functions only: importing this
package must stay cheap for the API and CPU-only tools.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from docintel.engines.base import EngineConfig, EngineError

# resolve_* and free_memory are used here and by the engine and tests through this module.
from docintel.engines.torch_runtime import (
    free_memory,
    resolve_attn,
    resolve_device,
    resolve_dtype,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "florence-community/Florence-2-base"

ModelKey = tuple[str, str, str, str]
"""(checkpoint, device, dtype name, attention implementation of the text model)."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    key: ModelKey
    model: Any
    processor: Any

    @property
    def device(self) -> str:
        return self.key[1]

    @property
    def dtype_name(self) -> str:
        return self.key[2]

    @property
    def attn_implementation(self) -> str:
        return self.key[3]


@dataclass(slots=True)
class _Entry:
    loaded: LoadedModel
    holders: int


_lock = threading.Lock()
_entries: dict[ModelKey, _Entry] = {}


def attn_per_submodel(attn: str) -> dict[str, str]:
    """``attn_implementation`` for from_pretrained: ``attn`` for the text model only.

    The DaViT vision tower's channel attention attends over channels with the
    image tokens as the head dimension (576 to 36,864 at 768 px), far above
    the 256 that flash-attn kernels accept; it stays on sdpa (or eager when
    eager is asked for, e.g. to debug).
    """
    return {"text_config": attn, "vision_config": "eager" if attn == "eager" else "sdpa"}


def model_key(config: EngineConfig) -> ModelKey:
    device = resolve_device(config.device)
    dtype_name = resolve_dtype(config.dtype, device)
    return (
        config.model or DEFAULT_MODEL,
        device,
        dtype_name,
        resolve_attn(config.option("attn_implementation"), device, dtype_name),
    )


def _load(key: ModelKey) -> LoadedModel:
    import torch
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    source, device, dtype_name, attn = key
    dtype = getattr(torch, dtype_name)
    model: Any
    # HF_HUB_OFFLINE and the hub cache are honoured by from_pretrained itself;
    # we never force a download or a local-only lookup.
    try:
        processor = AutoProcessor.from_pretrained(source)
        try:
            model = Florence2ForConditionalGeneration.from_pretrained(
                source, dtype=dtype, attn_implementation=attn_per_submodel(attn)
            )
        except (ImportError, ValueError) as exc:
            if attn == "sdpa":
                raise
            # An attention backend that will not load is a speed issue, not an outage.
            log.warning("attention %r unavailable (%s); falling back to sdpa", attn, exc)
            model = Florence2ForConditionalGeneration.from_pretrained(
                source, dtype=dtype, attn_implementation="sdpa"
            )
    except (OSError, ValueError, ImportError) as exc:
        raise EngineError(f"cannot load Florence-2 checkpoint {source!r}: {exc}") from exc
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    log.info("loaded Florence-2 %s on %s (%s, %s)", source, device, dtype_name, attn)
    return LoadedModel(key=key, model=model, processor=processor)


def acquire(config: EngineConfig) -> LoadedModel:
    """The shared model for this config, loading it on first use; pair with ``release``."""
    key = model_key(config)
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            entry = _Entry(_load(key), 0)
            _entries[key] = entry
        entry.holders += 1
        return entry.loaded


def release(key: ModelKey) -> None:
    """Drop one hold; the last one frees the weights (and the CUDA cache)."""
    with _lock:
        entry = _entries.get(key)
        if entry is None:
            return
        entry.holders -= 1
        if entry.holders > 0:
            return
        del _entries[key]
        del entry
    free_memory(key[1])


def loaded_keys() -> list[ModelKey]:
    with _lock:
        return list(_entries)


def holders(key: ModelKey) -> int:
    with _lock:
        entry = _entries.get(key)
        return entry.holders if entry else 0
