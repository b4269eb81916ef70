"""Load a Phi-3.5-vision checkpoint with its own parameter names, never its hub code.

The model is built on the meta device (no time spent on random weights for
4B parameters), then every tensor of the checkpoint's safetensors is placed
straight onto the target device in the target dtype, shard by shard. The
checkpoint must hold exactly the model's parameters: a missing or unexpected
key is an error that names it. Buffers that checkpoints do not store (RoPE
frequencies, CLIP's position ids) are computed again on the device.

A checkpoint is a local directory or a hub id; hub ids go through
``huggingface_hub``'s cache, so ``HF_HUB_OFFLINE=1`` and a pre-filled cache
work with no network.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docintel.engines.base import EngineError
from docintel.engines.phi35v.config import ConfigError, parse_config
from docintel.engines.torch_runtime import resolve_attn, resolve_device, resolve_dtype

if TYPE_CHECKING:
    import torch

    from docintel.engines.phi35v.model import Phi35VisionForCausalLM

log = logging.getLogger(__name__)

DEFAULT_MODEL = "microsoft/Phi-3.5-vision-instruct"
_CHECKPOINT_FILES = ["*.json", "*.safetensors", "tokenizer*"]
# The published checkpoint may store the token embedding under the name the
# reference code gives its second handle on it (the image embedding's ``wte``).
_EMBEDDING = "model.embed_tokens.weight"
_EMBEDDING_ALIAS = "model.vision_embed_tokens.wte.weight"
_END_OF_TURN = "<|end|>"


@dataclass(frozen=True, slots=True)
class LoadedPhi35V:
    source: str
    model: Phi35VisionForCausalLM
    tokenizer: Any
    device: str
    dtype_name: str
    attn_implementation: str
    eos_token_ids: tuple[int, ...]
    seconds: float


def checkpoint_dir(source: str) -> Path:
    """The local directory of a checkpoint given as a directory or a hub id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise EngineError(f"Phi-3.5-vision checkpoint {source!r} is not a directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=_CHECKPOINT_FILES))
    except Exception as error:  # offline and not cached, unknown id, no network
        raise EngineError(
            f"cannot get Phi-3.5-vision checkpoint {source!r}: {type(error).__name__}: {error}"
        ) from error


def weight_files(directory: Path) -> list[Path]:
    """The checkpoint's safetensors files, from its index when it is sharded."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [directory / name for name in sorted(set(weight_map.values()))]
    single = directory / "model.safetensors"
    if single.is_file():
        return [single]
    raise EngineError(
        f"no model.safetensors or model.safetensors.index.json in {directory} "
        "(only safetensors checkpoints are loaded)"
    )


def load(source: str, device: str = "auto", dtype: str = "auto", attn: str | None = None) -> Any:
    """The model, tokenizer and generation settings of a checkpoint, ready for inference."""
    started = time.perf_counter()
    device = resolve_device(device)
    dtype_name = resolve_dtype(dtype, device)
    attn = resolve_attn(attn, device, dtype_name)
    directory = checkpoint_dir(source)
    try:
        raw_config = json.loads((directory / "config.json").read_text())
        text_config, vision = parse_config(raw_config)
    except (OSError, ValueError, ConfigError) as error:
        raise EngineError(f"cannot read the config of {source!r}: {error}") from error
    model = build_model(text_config, vision, attn, dtype_name)
    fill_weights(model, weight_files(directory), device)
    model.eval()
    model.requires_grad_(False)
    tokenizer = load_tokenizer(directory)
    loaded = LoadedPhi35V(
        source=source,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype_name=dtype_name,
        attn_implementation=str(model.config._attn_implementation),  # after any fallback
        eos_token_ids=_eos_ids(directory, tokenizer),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "loaded Phi-3.5-vision %s on %s (%s, %s) in %.1fs",
        source,
        device,
        dtype_name,
        loaded.attn_implementation,
        loaded.seconds,
    )
    return loaded


def build_model(
    text_config: Any, vision: Any, attn: str, dtype_name: str
) -> Phi35VisionForCausalLM:
    """The model on the meta device with the requested attention and dtype; no weights yet."""
    import torch

    from docintel.engines.phi35v.model import Phi35VisionForCausalLM

    text_config._attn_implementation = attn
    # CLIP's attention runs over 577 tokens per crop: sdpa everywhere (eager to debug).
    vision.clip._attn_implementation = "eager" if attn == "eager" else "sdpa"
    try:
        with torch.device("meta"):
            model = Phi35VisionForCausalLM(text_config, vision)
    except (ImportError, ValueError) as error:
        if attn == "sdpa":
            raise EngineError(f"cannot build Phi-3.5-vision: {error}") from error
        # A kernel that will not load is a speed issue, not an outage.
        log.warning("attention %r unavailable (%s); using sdpa", attn, error)
        return build_model(text_config, vision, "sdpa", dtype_name)
    return model.to(getattr(torch, dtype_name))


def fill_weights(model: Phi35VisionForCausalLM, files: list[Path], device: str) -> None:
    """Every parameter from the files, placed on ``device``; names must match exactly."""
    import torch

    params = dict(model.named_parameters())
    persistent = {name for name in model.state_dict() if name not in params}
    expected = set(params) | persistent
    seen: set[str] = set()
    unexpected: list[str] = []
    for name, tensor in _tensors(files, device):
        if name == _EMBEDDING_ALIAS:
            if _EMBEDDING in seen:
                continue
            name = _EMBEDDING
        if name not in expected:
            unexpected.append(name)
            continue
        target = model.get_parameter(name) if name in params else model.get_buffer(name)
        if tuple(tensor.shape) != tuple(target.shape):
            raise EngineError(
                f"checkpoint tensor {name} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(target.shape)}"
            )
        _assign(model, name, tensor.to(target.dtype), is_parameter=name in params)
        seen.add(name)
    missing = sorted(expected - seen)
    if missing or unexpected:
        raise EngineError(_key_problem(missing, sorted(unexpected)))
    rebuild_buffers(model, torch.device(device))


def _tensors(files: list[Path], device: str) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    for path in files:
        try:
            with safe_open(str(path), framework="pt", device=device) as handle:
                for name in handle.keys():  # noqa: SIM118  (a safetensors handle, not a dict)
                    yield name, handle.get_tensor(name)
        except OSError as error:
            raise EngineError(f"cannot read {path.name}: {error}") from error


def _assign(model: Any, name: str, tensor: torch.Tensor, *, is_parameter: bool) -> None:
    import torch

    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    if is_parameter:
        setattr(owner, attr, torch.nn.Parameter(tensor, requires_grad=False))
    else:
        owner.register_buffer(attr, tensor)


def rebuild_buffers(model: Phi35VisionForCausalLM, device: torch.device) -> None:
    """Compute on ``device`` the buffers a checkpoint does not store; refuse any other."""
    import torch
    from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding

    with device:
        model.model.rotary_emb = Phi3RotaryEmbedding(model.config)
    embeddings = model.image_embedding.img_processor.vision_model.embeddings
    embeddings.register_buffer(
        "position_ids",
        torch.arange(embeddings.num_positions, device=device).expand((1, -1)),
        persistent=False,
    )
    left = [name for name, buffer in model.named_buffers() if buffer.is_meta]
    if left:
        raise EngineError(f"no value for the buffers {', '.join(left)}")


def _key_problem(missing: list[str], unexpected: list[str]) -> str:
    def listed(names: list[str]) -> str:
        shown = ", ".join(names[:10])
        return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")

    parts = []
    if missing:
        parts.append(f"missing from the checkpoint: {listed(missing)}")
    if unexpected:
        parts.append(f"unexpected in the checkpoint: {listed(unexpected)}")
    return "the checkpoint does not match Phi-3.5-vision: " + "; ".join(parts)


def load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    # AutoTokenizer reads config.json too and warns that it does not know
    # phi3_v; the tokenizer itself is plain tokenizer.json.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        # The fast tokenizer from tokenizer.json; the checkpoint's Python code is never run.
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise EngineError(f"cannot load the tokenizer in {directory}: {error}") from error
    finally:
        hf_logging.set_verbosity(verbosity)


def _eos_ids(directory: Path, tokenizer: Any) -> tuple[int, ...]:
    """Where an answer ends: the generation config's ids, else end-of-text and ``<|end|>``."""
    path = directory / "generation_config.json"
    ids: list[int] = []
    if path.is_file():
        value = json.loads(path.read_text()).get("eos_token_id")
        ids = [value] if isinstance(value, int) else list(value or [])
    if not ids:
        end = tokenizer.convert_tokens_to_ids(_END_OF_TURN)
        ids = [i for i in (tokenizer.eos_token_id, end) if isinstance(i, int)]
        ids = [i for i in ids if i != tokenizer.unk_token_id]
    if not ids:
        raise EngineError(f"no end-of-answer token in {directory}")
    return tuple(dict.fromkeys(ids))
