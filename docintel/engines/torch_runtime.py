"""Device, dtype and attention choices, and out-of-memory handling, shared by the model engines.

torch and transformers are imported inside the functions: the registry imports
engine modules to find their factories, and that must stay cheap.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

from docintel.engines.base import EngineError

T = TypeVar("T")
R = TypeVar("R")

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def resolve_device(requested: str) -> str:
    import torch

    if requested in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise EngineError(f"device {requested!r} requested but CUDA is not available")
    return requested


def resolve_dtype(requested: str, device: str) -> str:
    """A torch dtype name. auto: bf16 on CUDA where supported, else fp16; fp32 on CPU."""
    import torch

    if requested in ("", "auto"):
        if not device.startswith("cuda"):
            return "float32"
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    try:
        return _DTYPE_NAMES[requested.lower()]
    except KeyError:
        raise EngineError(
            f"unsupported dtype {requested!r}; use auto, float32, float16 or bfloat16"
        ) from None


def resolve_attn(requested: str | None, device: str, dtype_name: str) -> str:
    """The text model's attention: flash_attention_2 only with CUDA, flash-attn and fp16/bf16.

    flash-attn has no float32 kernels: asked for with float32 weights, it loads
    and then fails on every forward.
    """
    if requested and requested != "auto":
        return requested
    from transformers.utils import is_flash_attn_2_available

    half = dtype_name in ("float16", "bfloat16")
    if device.startswith("cuda") and half and is_flash_attn_2_available():
        return "flash_attention_2"
    return "sdpa"


def free_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, oom_type):
        return True
    text = f"{type(error).__name__} {error}".lower()
    return "out of memory" in text or "outofmemory" in text


def shrinking_batches(
    pending: deque[T],
    batch_size: Callable[[], int],
    generate: Callable[[list[T]], R],
    on_out_of_memory: Callable[[int], None],
    device: str,
) -> Iterator[tuple[list[T], R]]:
    """Run ``generate`` over ``pending`` in batches of ``batch_size()``, yielding each result.

    A CUDA out-of-memory error puts the batch back and calls
    ``on_out_of_memory(failed size)``, where the engine lowers its batch size
    for good (the GPU will not grow); only a single item's failure is raised.
    The caller may add to ``pending`` between batches (follow-up work).
    """
    while pending:
        size = min(batch_size(), len(pending))
        batch = [pending.popleft() for _ in range(size)]
        out_of_memory = False
        try:
            outputs = generate(batch)
        except Exception as error:
            if size == 1 or not is_out_of_memory(error):
                raise
            out_of_memory = True
        if out_of_memory:
            # Outside the except block: the traceback no longer pins the failed
            # batch's tensors, so emptying the cache frees them.
            pending.extendleft(reversed(batch))
            on_out_of_memory(size)
            free_memory(device)
            continue
        yield batch, outputs
