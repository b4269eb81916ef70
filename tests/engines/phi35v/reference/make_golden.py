"""Produce golden values for the Phi-3.5-vision engine from the published reference code.

This script is NOT collected by pytest and NOT run in CI. It runs Microsoft's own
``trust_remote_code`` implementation of Phi-3(.5)-vision (kept outside this repository) on a
tiny, randomly initialised model and writes everything our independent implementation in
``docintel/engines/phi35v/`` is tested against.

Scratch environment (outside the repo; never install this into the project venv)::

    mkdir -p /work/scratch/phi3v-ref/reference
    python3.11 -m venv /work/scratch/phi3v-ref/venv
    /work/scratch/phi3v-ref/venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        transformers==4.44.2 safetensors tokenizers pillow numpy accelerate
    # (used: torch 2.14.1, torchvision 0.29.1, transformers 4.44.2, tokenizers 0.19.1,
    #  numpy 2.4.6, pillow 13.0.0; torch==2.13.0 + PyPI torchvision do not import together)

Reference files, unmodified, in ``/work/scratch/phi3v-ref/reference/``:
``configuration_phi3_v.py``, ``modeling_phi3_v.py``, ``image_embedding_phi3_v.py``,
``processing_phi3_v.py`` and ``image_processing_phi3_v.py`` -- the Hugging Face hub files of
microsoft/Phi-3-vision-128k-instruct as mirrored in the GitHub repository
Aritra02091998/Phi-3-vision-128k-instruct-Improvised-for-QLORA-Training at commit 31ce181e
(that mirror edited only the flash-attention code paths, which never run here). The
Phi-3.5-vision hub layout (image embedding inside ``modeling_phi3_v.py``, image processor inside
``processing_phi3_v.py``) is accepted as well. Model code of 3 and 3.5 is the same for
prompts shorter than 4097 tokens; the 3.5 checkpoint differs in config values (see
``full_size_config.json``) and in ``num_crops`` (4 instead of 16).

Run from the repository root::

    /work/scratch/phi3v-ref/venv/bin/python tests/engines/phi35v/reference/make_golden.py \
        --reference-dir /work/scratch/phi3v-ref/reference --out tests/engines/phi35v/golden

Optionally add ``--published-index PATH/model.safetensors.index.json`` (the index of a published
Phi-3-vision / Phi-3.5-vision checkpoint) to assert that ``full_size_parameters.json`` names
exactly the tensors it holds (592; checked against the Phi-3-vision-128k index).

Patches applied to the reference at load time (in memory, files untouched):

1. ``CLIP_VIT_LARGE_PATCH14_336_CONFIG`` (module constant; the reference ignores any vision
   config and always builds CLIP ViT-L/14-336) is replaced by the tiny ``CLIPVisionConfig``
   described by our extension key ``img_processor.vision_config`` in ``config.json``. It is
   restored before the full-size model is built.
2. ``reshape_hd_patches_2x2merge`` asserts ``C == 1024`` (the ViT-L width); that one literal
   is replaced by ``self.image_dim_out`` so the tiny CLIP (width 32) can run. Nothing else in
   the reference is changed; attention runs with ``_attn_implementation="eager"``.

Outputs (under ``--out``): ``tiny-phi35v/`` (config.json, preprocessor_config.json,
model.safetensors, tokenizer files), ``landscape.png``, ``portrait.png``, ``golden.json``,
``full_size_parameters.json`` and ``full_size_config.json``. The run is deterministic
(single thread, fixed seeds): running it twice gives byte-identical files.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib
import importlib.util
import itertools
import json
import re
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

PKG = "phi3v_reference"
SEED = 20240820
PROMPT = "<|user|>\n<|image_1|>\nConvert this table to Markdown.<|end|>\n<|assistant|>\n"
NUM_CROPS = 4
MAX_NEW_TOKENS = 12
MIN_MARGIN = 0.05  # smallest accepted top-1 minus top-2 logit gap during greedy decoding
SAMPLE_STRIDE = 997
CKPT_DIRNAME = "tiny-phi35v"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

TINY_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "num_channels": 3,
    "image_size": 336,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-05,
    "projection_dim": 32,
}

# Phi-3 special tokens in the order (and with the flags) of the published tokenizer.json;
# the published ids are 32000.. (ours follow the tiny base vocabulary).
PHI3_ADDED_TOKENS: list[tuple[str, bool]] = [  # (content, rstrip)
    ("<|endoftext|>", False),
    ("<|assistant|>", True),
    ("<|placeholder1|>", True),
    ("<|placeholder2|>", True),
    ("<|placeholder3|>", True),
    ("<|placeholder4|>", True),
    ("<|system|>", False),
    ("<|end|>", False),
    ("<|placeholder5|>", True),
    ("<|placeholder6|>", True),
    ("<|user|>", False),
    *[(f"<|placeholder{i}|>", True) for i in range(7, 40)],
    ("<|image|>", True),
]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\n' + message['content'] "
    "+ '<|end|>\n' }}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != "
    "'assistant' %}{{- '<|assistant|>\n' -}}{% endif %}"
)

CORPUS = """\
Convert this table to Markdown. The table has a header row and three data rows.
Each row of the table lists an item, a quantity, a price and a total.
| Item | Qty | Price | Total |
| --- | --- | --- | --- |
| Apples | 12 | 0.50 | 6.00 |
| Bread | 2 | 3.25 | 6.50 |
| Coffee | 1 | 8.99 | 8.99 |
The invoice total is 21.49 and the document date is 2024-08-20.
Read the text in the image and write it as plain text. Describe the image.
This document is a scanned page with a title, a paragraph and a table.
What is shown in this image? The image shows a chart, a table and some text.
Extract the key values from the form: name, address, date, amount.
The quick brown fox jumps over the lazy dog. A small red box, a blue circle, a green line.
Please answer the question about the document. The answer is in the second column.
Markdown tables use pipes and dashes. Headers are separated from rows by a line of dashes.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Units: kg, cm, mm, EUR, USD, %.
Page 1 of 2. Section 3.1: Results. Figure 2: Accuracy by model size.
"""


# ----------------------------------------------------------------------------- reference import


def _exec_module(name: str, path: Path, patches: list[tuple[str, str]]) -> types.ModuleType:
    source = path.read_text(encoding="utf-8")
    for pattern, replacement in patches:
        source, count = re.subn(pattern, replacement, source)
        if count != 1:
            raise RuntimeError(f"patch {pattern!r} matched {count} times in {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def load_reference(ref_dir: Path) -> dict[str, Any]:
    """Import the reference files as package ``phi3v_reference`` (with the two patches)."""
    package = types.ModuleType(PKG)
    package.__path__ = [str(ref_dir)]
    sys.modules[PKG] = package
    configuration = importlib.import_module(f"{PKG}.configuration_phi3_v")
    separate_embedding = (ref_dir / "image_embedding_phi3_v.py").exists()
    embedding_file = "image_embedding_phi3_v" if separate_embedding else "modeling_phi3_v"
    embedding = _exec_module(
        f"{PKG}.{embedding_file}",
        ref_dir / f"{embedding_file}.py",
        [(r"C == 1024", "C == self.image_dim_out")],
    )
    modeling = importlib.import_module(f"{PKG}.modeling_phi3_v")
    processing = importlib.import_module(f"{PKG}.processing_phi3_v")
    if hasattr(processing, "Phi3VImageProcessor"):
        image_processor_cls = processing.Phi3VImageProcessor
    else:
        image_processor_cls = importlib.import_module(
            f"{PKG}.image_processing_phi3_v"
        ).Phi3VImageProcessor
    return {
        "config_cls": configuration.Phi3VConfig,
        "embedding_module": embedding,
        "model_cls": modeling.Phi3VForCausalLM,
        "processor_cls": processing.Phi3VProcessor,
        "image_processor_cls": image_processor_cls,
    }


# ----------------------------------------------------------------------------------- tokenizer


def train_bpe(text: str, vocab_budget: int) -> tuple[list[str], list[tuple[str, str]]]:
    """A tiny deterministic BPE trainer over SentencePiece-style words (ties: smallest pair)."""
    normalized = "\u2581" + text.replace(" ", "\u2581")
    words = Counter(re.findall("\u2581?[^\u2581\n]+|\n|\u2581", normalized))
    alphabet = sorted({ch for word in words for ch in word})
    pieces = {word: list(word) for word in words}
    merges: list[tuple[str, str]] = []
    known = set(alphabet)
    while len(known) < vocab_budget:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            seq = pieces[word]
            for pair in itertools.pairwise(seq):
                pairs[pair] += freq
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < 2:
            break
        merges.append(best)
        known.add(best[0] + best[1])
        for word, seq in pieces.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            pieces[word] = out
    return alphabet, merges


def build_tokenizer(out_dir: Path) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers import LlamaTokenizerFast

    alphabet, merges = train_bpe(CORPUS, vocab_budget=253)
    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for token in alphabet + [a + b for a, b in merges]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(
        models.BPE(
            vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=False
        )
    )
    # Same pipeline as the published Phi-3 tokenizer.json (a Llama/SentencePiece BPE).
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )

    def added(content: str, *, rstrip: bool, special: bool) -> AddedToken:
        return AddedToken(
            content,
            single_word=False,
            lstrip=False,
            rstrip=rstrip,
            normalized=False,
            special=special,
        )

    tok.add_special_tokens([added("<unk>", rstrip=False, special=True)])
    tok.add_special_tokens([added("<s>", rstrip=False, special=True)])
    tok.add_tokens([added("</s>", rstrip=True, special=False)])
    for content, rstrip in PHI3_ADDED_TOKENS:
        tok.add_special_tokens([added(content, rstrip=rstrip, special=True)])

    fast = LlamaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|endoftext|>",
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        add_bos_token=True,
        add_eos_token=False,
        legacy=False,
        clean_up_tokenization_spaces=False,
        padding_side="right",
        model_max_length=131072,
        use_default_system_prompt=False,
        chat_template=CHAT_TEMPLATE,
        additional_special_tokens=["<|system|>", "<|end|>", "<|user|>"],
    )
    fast.save_pretrained(str(out_dir))
    return LlamaTokenizerFast.from_pretrained(str(out_dir))


# ------------------------------------------------------------------------------ config/weights


def round_up(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


def tiny_config_dict(tokenizer: Any) -> dict[str, Any]:
    vocab_size = round_up(len(tokenizer), 64)
    return {
        "_name_or_path": "tiny-phi35v-golden",
        "architectures": ["Phi3VForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_phi3_v.Phi3VConfig",
            "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
        },
        "bos_token_id": tokenizer.convert_tokens_to_ids("<s>"),
        "embd_layer": {
            "embedding_cls": "image",
            "hd_transform_order": "sub_glb",
            "projection_cls": "mlp",
            "use_hd_transform": True,
            "with_learnable_separator": True,
        },
        "embd_pdrop": 0.0,
        "eos_token_id": tokenizer.convert_tokens_to_ids("</s>"),
        "hidden_act": "silu",
        "hidden_size": 64,
        "img_processor": {
            "image_dim_out": TINY_VISION_CONFIG["hidden_size"],
            "model_name": "openai/clip-vit-large-patch14-336",
            "name": "clip_vision_model",
            "num_img_tokens": 144,
            "vision_config": dict(TINY_VISION_CONFIG),
        },
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 131072,
        "model_type": "phi3_v",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 4,
        "original_max_position_embeddings": 4096,
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "long_factor": [1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0],
            "short_factor": [1.02, 1.05, 1.08, 1.12, 1.16, 1.2, 1.25, 1.3],
            "type": "su",
        },
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.44.2",
        "use_cache": True,
        "vocab_size": vocab_size,
        "_attn_implementation": "eager",
    }


# Published Phi-3.5-vision-instruct rope_scaling factors (48 = head_dim 96 / 2).
# fmt: off
PUBLISHED_LONG_FACTOR = [
    1.0800000429153442, 1.1100000143051147, 1.1399999856948853, 1.340000033378601,
    1.5899999141693115, 1.600000023841858, 1.6200000047683716, 2.620000123977661,
    3.2300000190734863, 3.2300000190734863, 4.789999961853027, 7.400000095367432,
    7.700000286102295, 9.09000015258789, 12.199999809265137, 17.670000076293945,
    24.46000099182129, 28.57000160217285, 30.420001983642578, 30.840002059936523,
    32.590003967285156, 32.93000411987305, 42.320003509521484, 44.96000289916992,
    50.340003967285156, 50.45000457763672, 57.55000305175781, 57.93000411987305,
    58.21000289916992, 60.1400032043457, 62.61000442504883, 62.62000274658203,
    62.71000289916992, 63.1400032043457, 63.1400032043457, 63.77000427246094,
    63.93000411987305, 63.96000289916992, 63.970001220703125, 64.02999877929688,
    64.06999969482422, 64.08000183105469, 64.12000274658203, 64.41000366210938,
    64.4800033569336, 64.51000213623047, 64.52999877929688, 64.83999633789062,
]
PUBLISHED_SHORT_FACTOR = [
    1.08, 1.1, 1.1300000000000001, 1.2800000000000002, 1.3100000000000003,
    1.4500000000000004, 1.4500000000000004, 1.9500000000000008, 2.030000000000001,
    2.4299999999999926, 2.5699999999999896, 2.9499999999999815, 3.729999999999965,
    3.869999999999962, 4.189999999999955, 4.43999999999995, 4.6399999999999455,
    4.979999999999938, 5.159999999999934, 5.279999999999932, 5.759999999999922,
    5.889999999999919, 5.889999999999919, 5.969999999999917, 6.089999999999915,
    6.2799999999999105, 6.7699999999999, 6.8899999999998975, 7.109999999999893,
    7.129999999999892, 7.179999999999891, 7.289999999999889, 7.339999999999888,
    7.559999999999883, 7.619999999999882, 7.69999999999988, 7.879999999999876,
    7.879999999999876, 7.879999999999876, 7.939999999999875, 7.949999999999875,
    7.979999999999874, 8.19999999999987, 8.439999999999864, 8.469999999999864,
    8.589999999999861, 8.809999999999857, 8.999999999999853,
]
# fmt: on


def published_config_dict() -> dict[str, Any]:
    """config.json of microsoft/Phi-3.5-vision-instruct (values as published)."""
    return {
        "_name_or_path": "Phi-3.5-vision-instruct",
        "architectures": ["Phi3VForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_phi3_v.Phi3VConfig",
            "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM",
        },
        "bos_token_id": 1,
        "embd_layer": {
            "embedding_cls": "image",
            "hd_transform_order": "sub_glb",
            "projection_cls": "mlp",
            "use_hd_transform": True,
            "with_learnable_separator": True,
        },
        "embd_pdrop": 0.0,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 3072,
        "img_processor": {
            "image_dim_out": 1024,
            "model_name": "openai/clip-vit-large-patch14-336",
            "name": "clip_vision_model",
            "num_img_tokens": 144,
        },
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "model_type": "phi3_v",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 32000,
        "resid_pdrop": 0.0,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "long_factor": list(PUBLISHED_LONG_FACTOR),
            "short_factor": list(PUBLISHED_SHORT_FACTOR),
            "type": "su",
        },
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.38.1",
        "use_cache": True,
        "vocab_size": 32064,
        "_attn_implementation": "flash_attention_2",
    }


def make_config(ref: dict[str, Any], config_dict: dict[str, Any]) -> Any:
    kwargs = copy.deepcopy(config_dict)
    kwargs["_attn_implementation"] = "eager"
    return ref["config_cls"](**kwargs)


def checkpoint_keys(model: torch.nn.Module) -> list[str]:
    """state_dict keys a published checkpoint holds: aliases of an earlier tensor are dropped.

    ``model.vision_embed_tokens.wte`` is the same module as ``model.embed_tokens``, so its
    weight appears twice in ``state_dict()``; the published safetensors stores it only once
    (as ``model.embed_tokens.weight``). Non-persistent buffers (CLIP ``position_ids``, rotary
    ``inv_freq``) are not in ``state_dict()`` at all.
    """
    seen: set[int] = set()
    keys = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        keys.append(name)
    return sorted(keys)


NORM_SUFFIXES = (
    "layer_norm1.weight",
    "layer_norm2.weight",
    "pre_layrnorm.weight",
    "post_layernorm.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
    "model.norm.weight",
)


def init_std(name: str, shape: torch.Size) -> tuple[float, float]:
    """(mean, std) of the normal distribution each parameter is drawn from."""
    if name.endswith(NORM_SUFFIXES):
        return 1.0, 0.1
    if name.endswith(("glb_GN", "sub_GN")):
        return 0.0, 0.5
    if name.endswith("embeddings.class_embedding"):
        return 0.0, 0.5
    if name.endswith("embeddings.position_embedding.weight"):
        return 0.0, 0.5
    if name == "model.embed_tokens.weight":
        return 0.0, 1.0
    if name == "lm_head.weight":
        return 0.0, 0.5
    if name.endswith(".bias"):
        return 0.0, 0.05
    fan_in = int(np.prod(shape[1:]))
    return 0.0, 1.0 / fan_in**0.5


@torch.no_grad()
def randomize(model: torch.nn.Module, keys: list[str]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    state = model.state_dict()
    tensors = {}
    for name in keys:
        mean, std = init_std(name, state[name].shape)
        value = torch.randn(state[name].shape, generator=generator, dtype=torch.float32)
        tensors[name] = (value * std + mean).contiguous()
    return tensors


# -------------------------------------------------------------------------------------- images


def _background(width: int, height: int, phase: float) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 200 + 40 * np.sin(xs / 37.0 + phase)
    green = 180 + 60 * np.cos(ys / 23.0 - phase)
    blue = 150 + 80 * np.sin((xs + 2 * ys) / 51.0)
    rgb = np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB")


def make_images() -> dict[str, Image.Image]:
    font = ImageFont.load_default_imagefont()  # bitmap font: identical across Pillow builds

    landscape = _background(440, 200, 0.3)
    draw = ImageDraw.Draw(landscape)
    draw.rectangle((10, 10, 200, 90), fill=(220, 40, 40), outline=(0, 0, 0), width=3)
    draw.ellipse((250, 20, 420, 120), fill=(40, 90, 220))
    draw.polygon([(30, 190), (120, 110), (210, 190)], fill=(30, 160, 60))
    for x in range(230, 431, 50):
        draw.line((x, 130, x, 190), fill=(0, 0, 0), width=2)
    for y in range(130, 191, 20):
        draw.line((230, y, 430, y), fill=(0, 0, 0), width=2)
    draw.text((16, 20), "INVOICE 2024", fill=(255, 255, 255), font=font)
    draw.text((16, 50), "Qty 12  Total 6.00", fill=(255, 255, 0), font=font)
    draw.text((240, 135), "Item  Qty  Price", fill=(0, 0, 0), font=font)
    draw.text((270, 60), "Markdown", fill=(255, 255, 255), font=font)

    portrait = _background(230, 390, 1.7)
    draw = ImageDraw.Draw(portrait)
    draw.rectangle((15, 15, 215, 80), fill=(250, 200, 30), outline=(60, 0, 90), width=4)
    draw.text((25, 30), "Page 1 of 2", fill=(0, 0, 0), font=font)
    draw.text((25, 55), "Section 3.1: Results", fill=(120, 0, 0), font=font)
    draw.ellipse((40, 100, 190, 250), fill=(200, 30, 160), outline=(0, 0, 0), width=2)
    for i in range(6):
        draw.rectangle((20 + 32 * i, 370 - 18 * (i + 1), 44 + 32 * i, 370), fill=(20, 40 * i, 200))
    draw.text((20, 265), "Figure 2: Accuracy", fill=(0, 0, 90), font=font)
    draw.line((10, 380, 220, 260), fill=(0, 120, 0), width=3)
    return {"landscape": landscape, "portrait": portrait}


# ------------------------------------------------------------------------------------- goldens


def floats(tensor: torch.Tensor) -> list[float]:
    return [float(v) for v in tensor.detach().to(torch.float32).flatten().tolist()]


def top2_margin(logits: torch.Tensor) -> float:
    top = torch.topk(logits.to(torch.float64), 2).values
    return float(top[0] - top[1])


@torch.no_grad()
def run_case(
    ref: dict[str, Any], model: Any, processor: Any, image: Image.Image, tokenizer: Any
) -> dict[str, Any]:
    inputs = processor(PROMPT, [image], return_tensors="pt")
    image_out = processor.image_processor([image], return_tensors="pt")
    input_ids = inputs["input_ids"]
    pixel_values = inputs["pixel_values"]
    image_sizes = inputs["image_sizes"]
    pv32 = pixel_values.to(torch.float32).contiguous()

    captured: dict[str, torch.Tensor] = {}
    embedding = model.model.vision_embed_tokens

    def grab_projection(_module: Any, _args: Any, output: torch.Tensor) -> None:
        captured["projection"] = output.detach().clone()

    def grab_clip(_module: Any, _args: Any, output: Any) -> None:
        captured["clip"] = output.hidden_states[embedding.layer_idx][:, 1:].detach().clone()

    hooks = [
        embedding.img_projection.register_forward_hook(grab_projection),
        embedding.img_processor.register_forward_hook(grab_clip),
    ]
    # The reference clamps input_ids in place: always pass a copy.
    out = model(
        input_ids=input_ids.clone(),
        attention_mask=inputs["attention_mask"],
        pixel_values=pixel_values,
        image_sizes=image_sizes,
        use_cache=False,
    )
    for hook in hooks:
        hook.remove()
    prompt_logits = out.logits[0]

    generated = model.generate(
        input_ids=input_ids.clone(),
        attention_mask=inputs["attention_mask"],
        pixel_values=pixel_values,
        image_sizes=image_sizes,
        do_sample=False,
        num_beams=1,
        max_new_tokens=MAX_NEW_TOKENS,
        eos_token_id=None,
        pad_token_id=model.config.pad_token_id,
        use_cache=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    new_tokens = generated.sequences[0, input_ids.shape[1] :]
    step_logits = torch.stack([step[0] for step in generated.logits])
    if new_tokens.shape[0] != MAX_NEW_TOKENS:
        raise RuntimeError(f"generated {new_tokens.shape[0]} tokens, expected {MAX_NEW_TOKENS}")
    if not torch.equal(step_logits.argmax(-1), new_tokens):
        raise RuntimeError("greedy tokens differ from the argmax of the recorded logits")
    margins = [top2_margin(step) for step in step_logits]

    # Consistency: one full forward over prompt + generated tokens (no cache).
    full_ids = torch.cat([input_ids, new_tokens[None, :-1]], dim=1)
    full = model(
        input_ids=full_ids.clone(),
        attention_mask=torch.ones_like(full_ids),
        pixel_values=pixel_values,
        image_sizes=image_sizes,
        use_cache=False,
    )
    full_steps = full.logits[0, input_ids.shape[1] - 1 :]
    cache_diff = float((full_steps - step_logits).abs().max())
    prompt_vs_step0 = float((prompt_logits[-1] - step_logits[0]).abs().max())

    ids = input_ids[0].tolist()
    image_positions = [i for i, t in enumerate(ids) if t < 0]
    projection = captured["projection"]
    clip = captured["clip"]
    chunks = re.split(r"<\|image_\d+\|>", PROMPT)
    return {
        "prompt": PROMPT,
        "image_size_wh": list(image.size),
        "chunk_input_ids": [tokenizer(chunk).input_ids for chunk in chunks],
        "input_ids": ids,
        "seq_len": len(ids),
        "attention_mask_sum": int(inputs["attention_mask"].sum()),
        "image_token_span": [image_positions[0], image_positions[-1] + 1],
        "image_sizes": image_sizes.tolist(),
        "num_img_tokens": [int(n) for n in image_out["num_img_tokens"]],
        "num_image_ids_in_input": len(image_positions),
        "pixel_values_shape": list(pixel_values.shape),
        "pixel_values_dtype": str(pixel_values.dtype),
        "pixel_values_sha256": hashlib.sha256(pv32.numpy().astype("<f4").tobytes()).hexdigest(),
        "pixel_values_crop_sums": [float(s) for s in pv32[0].double().sum(dim=(1, 2, 3))],
        "pixel_values_sample_stride": SAMPLE_STRIDE,
        "pixel_values_sample": floats(pv32.flatten()[::SAMPLE_STRIDE]),
        "clip_features_shape": list(clip.shape),
        "clip_features_crop_sums": [float(s) for s in clip.double().sum(dim=(1, 2))],
        "image_embeds_shape": list(projection.shape),
        "image_embeds_row_sums": [float(s) for s in projection.double().sum(dim=-1)],
        "image_embeds_sample_stride": 101,
        "image_embeds_sample": floats(projection.flatten()[::101]),
        "prompt_logits_last8": [floats(row) for row in prompt_logits[-8:]],
        "prompt_argmax_last8": prompt_logits[-8:].argmax(-1).tolist(),
        "generated_ids": new_tokens.tolist(),
        "generated_text": tokenizer.decode(new_tokens.tolist()),
        "step_logits": [floats(row) for row in step_logits],
        "step_margins": margins,
        "min_margin": min(margins),
        "check_full_forward_vs_cached_steps_max_abs_diff": cache_diff,
        "check_prompt_forward_vs_step0_max_abs_diff": prompt_vs_step0,
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--published-index",
        type=Path,
        default=None,
        help="optional model.safetensors.index.json of a published checkpoint to compare names",
    )
    args = parser.parse_args()

    import transformers
    from safetensors.torch import load_file, save_file
    from transformers import CLIPVisionConfig

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    import warnings

    warnings.filterwarnings("ignore")

    ref = load_reference(args.reference_dir.resolve())
    out: Path = args.out
    ckpt = out / CKPT_DIRNAME
    ckpt.mkdir(parents=True, exist_ok=True)

    # a) tokenizer
    tokenizer = build_tokenizer(ckpt)

    # b) configs
    config_dict = tiny_config_dict(tokenizer)
    write_json(ckpt / "config.json", config_dict)
    preprocessor = {
        "auto_map": {
            "AutoProcessor": "processing_phi3_v.Phi3VProcessor",
            "AutoImageProcessor": "processing_phi3_v.Phi3VImageProcessor",
        },
        "image_mean": CLIP_MEAN,
        "image_processor_type": "Phi3VImageProcessor",
        "image_std": CLIP_STD,
        "num_crops": NUM_CROPS,
        "num_img_tokens": 144,
        "processor_class": "Phi3VProcessor",
    }
    write_json(ckpt / "preprocessor_config.json", preprocessor)

    # c) weights: patch the hard-coded CLIP config, build, randomize, save, reload
    embedding_module = ref["embedding_module"]
    original_clip = embedding_module.CLIP_VIT_LARGE_PATCH14_336_CONFIG
    tiny_clip = CLIPVisionConfig(**TINY_VISION_CONFIG)
    tiny_clip._attn_implementation = "eager"
    embedding_module.CLIP_VIT_LARGE_PATCH14_336_CONFIG = tiny_clip
    config = make_config(ref, config_dict)
    torch.manual_seed(SEED)
    model = ref["model_cls"](config).to(torch.float32).eval()
    keys = checkpoint_keys(model)
    tensors = randomize(model, keys)
    save_file(tensors, str(ckpt / "model.safetensors"), metadata={"format": "pt"})

    torch.manual_seed(SEED + 1)
    model = ref["model_cls"](config).to(torch.float32).eval()
    missing, unexpected = model.load_state_dict(load_file(str(ckpt / "model.safetensors")), False)
    if unexpected or missing != ["model.vision_embed_tokens.wte.weight"]:
        raise RuntimeError(f"checkpoint mismatch: missing={missing} unexpected={unexpected}")

    # d) images (goldens are computed from the PNGs as read back from disk)
    for name, image in make_images().items():
        image.save(out / f"{name}.png", format="PNG", optimize=False)

    # e) goldens
    image_processor = ref["image_processor_cls"](
        num_crops=NUM_CROPS, image_mean=CLIP_MEAN, image_std=CLIP_STD, num_img_tokens=144
    )
    processor = ref["processor_cls"](image_processor=image_processor, tokenizer=tokenizer)
    cases = {}
    for name in ("landscape", "portrait"):
        with Image.open(out / f"{name}.png") as handle:
            image = handle.convert("RGB")
        cases[name] = run_case(ref, model, processor, image, tokenizer)
    min_margin = min(case["min_margin"] for case in cases.values())
    if min_margin < MIN_MARGIN:
        raise RuntimeError(f"greedy margin {min_margin} below {MIN_MARGIN}: rescale weights")
    golden = {
        "about": "Golden values from the reference Phi-3(.5)-vision code; see make_golden.py.",
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__,
        },
        "checkpoint_dir": CKPT_DIRNAME,
        "num_crops": NUM_CROPS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "generation": "greedy, use_cache=True, eos disabled (eos_token_id=None)",
        "min_margin": min_margin,
        "tokenizer_samples": {
            text: tokenizer(text).input_ids
            for text in (
                "Convert this table to Markdown.",
                "<|user|>\n",
                "\nConvert this table to Markdown.<|end|>\n<|assistant|>\n",
                "<|system|>\nHello world<|end|>\n<|image|> x",
                "Zebra quizzes: 42 \u00e9t\u00e9!",
            )
        },
        "cases": cases,
    }
    write_json(out / "golden.json", golden)

    # f) full-size parameter list on the meta device, with the real CLIP ViT-L/14-336
    embedding_module.CLIP_VIT_LARGE_PATCH14_336_CONFIG = original_clip
    published = published_config_dict()
    write_json(out / "full_size_config.json", published)
    with torch.device("meta"):
        full_model = ref["model_cls"](make_config(ref, published))
    full_state = full_model.state_dict()
    full_keys = checkpoint_keys(full_model)
    write_json(
        out / "full_size_parameters.json",
        [[name, list(full_state[name].shape)] for name in full_keys],
    )
    if args.published_index is not None:
        index = json.loads(args.published_index.read_text(encoding="utf-8"))
        published_keys = sorted(index["weight_map"])
        if published_keys != full_keys:
            only_ours = sorted(set(full_keys) - set(published_keys))
            only_published = sorted(set(published_keys) - set(full_keys))
            raise RuntimeError(f"key mismatch: ours={only_ours} published={only_published}")
        print(f"full-size keys match the published index ({len(full_keys)} tensors)")

    for name, case in cases.items():
        print(
            f"{name}: seq_len={case['seq_len']} image_tokens={case['num_img_tokens']} "
            f"image_sizes={case['image_sizes']} generated={case['generated_ids']} "
            f"min_margin={case['min_margin']:.4f} "
            f"cache_diff={case['check_full_forward_vs_cached_steps_max_abs_diff']:.2e}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
