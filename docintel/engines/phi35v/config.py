"""Read a Phi-3.5-vision ``config.json`` into the configs of its two halves.

The checkpoint names its vision tower only by model id
(``openai/clip-vit-large-patch14-336``); its shape is that of CLIP ViT-L/14 at
336 px. A ``vision_config`` inside ``img_processor`` overrides it; the tests use
that for tiny checkpoints, and the published model needs none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import CLIPVisionConfig, Phi3Config

CLIP_VIT_L14_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}
_VISION_KEYS = ("embd_layer", "img_processor", "auto_map", "architectures", "model_type")
_EXPECTED_LAYOUT = {
    "hd_transform_order": "sub_glb",
    "projection_cls": "mlp",
    "use_hd_transform": True,
    "with_learnable_separator": True,
}


class ConfigError(ValueError):
    """The checkpoint's config describes a model this implementation does not build."""


@dataclass(frozen=True)
class VisionSettings:
    clip: CLIPVisionConfig
    image_dim_out: int
    layer_idx: int = -2  # hidden state the features come from: the second-to-last layer's
    num_img_tokens: int = 144

    @property
    def crop_side(self) -> int:
        return _int(self.clip.image_size)

    @property
    def patches_per_side(self) -> int:
        return self.crop_side // _int(self.clip.patch_size)


def _int(value: object) -> int:
    # CLIPVisionConfig types its sizes loosely (int, pair or None); ours are square ints.
    if not isinstance(value, int):
        raise ConfigError(f"vision sizes must be whole numbers, got {value!r}")
    return value


def parse_config(raw: dict[str, Any]) -> tuple[Phi3Config, VisionSettings]:
    """(decoder config, vision settings) of a checkpoint's ``config.json``."""
    model_type = raw.get("model_type")
    if model_type != "phi3_v":
        raise ConfigError(f"model_type is {model_type!r}, not 'phi3_v'")
    layout = raw.get("embd_layer") or {}
    for key, expected in _EXPECTED_LAYOUT.items():
        if layout.get(key) != expected:
            found = layout.get(key)
            raise ConfigError(f"embd_layer.{key} is {found!r}; only {expected!r} is built")
    processor = raw.get("img_processor") or {}
    if processor.get("name") != "clip_vision_model":
        raise ConfigError(f"img_processor.name {processor.get('name')!r} is not clip_vision_model")
    if processor.get("type_feature", "patch") != "patch":
        raise ConfigError("only patch features (img_processor.type_feature = patch) are built")
    clip = CLIPVisionConfig(**{**CLIP_VIT_L14_336, **processor.get("vision_config", {})})
    image_dim_out = int(processor.get("image_dim_out", clip.hidden_size))
    if image_dim_out != clip.hidden_size:
        raise ConfigError(f"image_dim_out {image_dim_out} != vision width {clip.hidden_size}")
    side, patch = _int(clip.image_size), _int(clip.patch_size)
    if side % patch or (side // patch) % 2:
        raise ConfigError("the vision tower's patch grid must have an even side for the 2x2 merge")
    vision = VisionSettings(
        clip=clip,
        image_dim_out=image_dim_out,
        layer_idx=int(processor.get("layer_idx", -2)),
        num_img_tokens=int(processor.get("num_img_tokens", 144)),
    )
    decoder = {k: v for k, v in raw.items() if k not in _VISION_KEYS}
    if decoder.get("rope_scaling"):
        decoder["rope_scaling"] = _longrope(decoder)
    return Phi3Config(**decoder), vision


def _longrope(decoder: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's RoPE scaling under the name transformers 5 gives it.

    Published as type ``su``, renamed ``longrope`` since; the factor is the
    context's growth over pre-training, from which the attention scale follows.
    """
    scaling = dict(decoder["rope_scaling"])
    kind = scaling.pop("type", scaling.pop("rope_type", None))
    if kind not in ("su", "longrope"):
        raise ConfigError(f"rope_scaling type {kind!r} is not su/longrope")
    original = decoder.get("original_max_position_embeddings")
    if original and "factor" not in scaling:
        scaling["factor"] = decoder["max_position_embeddings"] / original
    return {"rope_type": "longrope", **scaling}
