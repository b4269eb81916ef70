"""The ``vlm`` extraction engine: any transformers-native image-text-to-text model.

For document VLMs newer than Phi-3.5-vision that transformers implements
itself (Idefics3, LLaVA and their kin): the checkpoint's own processor and
chat template build the prompts, ``AutoModelForImageTextToText`` generates.
The prompts, validation and repair are the ``phi35v`` engine's
(``vlm_extraction``). Checkpoint code from a hub is never run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PIL import Image

from docintel.engines.base import EngineConfig, EngineError
from docintel.engines.torch_runtime import resolve_attn, resolve_device, resolve_dtype
from docintel.engines.vlm_extraction import (
    Answer,
    Conversation,
    VisionLanguageExtractor,
    decode_answer,
)
from docintel.geometry import RegionKind

log = logging.getLogger(__name__)

NAME = "vlm"


def chat_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation in the chat-template message format, the image first."""
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(conversation):
        content: list[dict[str, Any]] = [{"type": "image"}] if i == 0 else []
        content.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": content})
    return messages


class TransformersVlmEngine(VisionLanguageExtractor):
    name = NAME

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        if not config.model:
            raise EngineError(
                "the vlm engine needs a checkpoint: set DOCINTEL_EXTRACT_MODEL "
                "(a hub id or a local directory of an image-text-to-text model)"
            )
        self.model_id = config.model
        self.device = resolve_device(config.device)
        dtype_name = resolve_dtype(config.dtype, self.device)
        attn = resolve_attn(config.option("attn_implementation"), self.device, dtype_name)
        self.processor, self.model = _load(config.model, self.device, dtype_name, attn)
        tokenizer = self.processor.tokenizer
        self.eos_ids = _eos_ids(self.model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.eos_ids[0]
        self.generate_overrides: dict[str, Any] = {}

    def release(self) -> None:
        del self.model

    def generate(
        self, kind: RegionKind, images: Sequence[Image.Image], conversations: Sequence[Conversation]
    ) -> list[Answer]:
        import torch

        texts = [
            self.processor.apply_chat_template(
                chat_messages(c), add_generation_prompt=True, tokenize=False
            )
            for c in conversations
        ]
        inputs = self.processor(
            text=texts,
            images=[[image] for image in images],
            return_tensors="pt",
            padding=True,
            padding_side="left",  # decoder-only: the answer must follow the prompt directly
        ).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        budget = self.options.max_new_tokens[kind]
        kwargs: dict[str, Any] = {
            "max_new_tokens": budget,
            "do_sample": False,
            "eos_token_id": list(self.eos_ids),
            "pad_token_id": self.pad_id,
        }
        kwargs.update(self.generate_overrides)
        with torch.inference_mode():
            sequences = self.model.generate(**inputs, **kwargs)
        new = sequences[:, inputs["input_ids"].shape[1] :].tolist()
        return [decode_answer(row, self.eos_ids, self.processor.tokenizer) for row in new]


def _load(source: str, device: str, dtype_name: str, attn: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model: Any
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForImageTextToText.from_pretrained(
            source,
            dtype=getattr(torch, dtype_name),
            attn_implementation=attn,
            trust_remote_code=False,
        )
    except (OSError, ValueError, ImportError, KeyError) as error:
        raise EngineError(f"cannot load vision-language model {source!r}: {error}") from error
    if getattr(processor, "chat_template", None) is None:
        raise EngineError(f"{source!r} has no chat template; the vlm engine needs one")
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    log.info("loaded %s on %s (%s, %s)", source, device, dtype_name, attn)
    return processor, model


def _eos_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    value = getattr(model.generation_config, "eos_token_id", None)
    ids = [value] if isinstance(value, int) else list(value or [])
    if not ids and tokenizer.eos_token_id is not None:
        ids = [tokenizer.eos_token_id]
    if not ids:
        raise EngineError("the model names no end-of-answer token")
    return tuple(ids)


def build(config: EngineConfig) -> TransformersVlmEngine:
    return TransformersVlmEngine(config)
