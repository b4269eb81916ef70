"""Loading once, sharing between engines, releasing on config change; registry wiring."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from docintel.engines import registry
from docintel.engines.base import EngineConfig, EngineError
from docintel.engines.florence2 import loading
from docintel.engines.florence2.engine import Florence2Ocr, Florence2RegionDetector
from tests.engines.florence2.conftest import ConfigFactory


def test_registry_builds_and_caches_the_engine(tiny_florence2_dir: Path) -> None:
    config = EngineConfig(name="florence2", model=str(tiny_florence2_dir))
    engine = registry.get_ocr_engine(config)
    assert isinstance(engine, Florence2Ocr)
    assert registry.get_ocr_engine(config) is engine
    assert loading.loaded_keys() == [(str(tiny_florence2_dir), "cpu", "float32", "sdpa")]


def test_ocr_and_detector_share_one_model(tiny_florence2_dir: Path) -> None:
    config = EngineConfig(name="florence2", model=str(tiny_florence2_dir))
    ocr = registry.get_ocr_engine(config)
    detector = registry.get_region_detector(config)
    assert isinstance(ocr, Florence2Ocr) and isinstance(detector, Florence2RegionDetector)
    assert ocr.loaded.model is detector.loaded.model
    assert loading.holders(ocr.loaded.key) == 2
    registry.clear_engines()
    assert loading.loaded_keys() == []


def test_config_change_releases_the_old_model(tiny_florence2_dir: Path) -> None:
    old_config = EngineConfig(name="florence2", model=str(tiny_florence2_dir))
    old = registry.get_ocr_engine(old_config)
    assert isinstance(old, Florence2Ocr)
    new = registry.get_ocr_engine(
        EngineConfig(name="florence2", model=str(tiny_florence2_dir), dtype="bfloat16")
    )
    assert new is not old
    assert loading.loaded_keys() == [(str(tiny_florence2_dir), "cpu", "bfloat16", "sdpa")]
    with pytest.raises(EngineError, match="closed"):
        old.recognize([])
    assert isinstance(new, Florence2Ocr)
    assert next(new.loaded.model.parameters()).dtype == torch.bfloat16


def test_config_change_releases_the_old_detector_too(tiny_florence2_dir: Path) -> None:
    """A new OCR config must not leave the old detector holding the old weights."""
    old_config = EngineConfig(name="florence2", model=str(tiny_florence2_dir))
    registry.get_ocr_engine(old_config)
    old_detector = registry.get_region_detector(old_config)
    new_config = EngineConfig(name="florence2", model=str(tiny_florence2_dir), dtype="bfloat16")
    registry.get_ocr_engine(new_config)
    assert loading.loaded_keys() == [(str(tiny_florence2_dir), "cpu", "bfloat16", "sdpa")]
    with pytest.raises(EngineError, match="closed"):
        old_detector.detect([])


def test_bfloat16_on_cpu_runs(make_config: ConfigFactory) -> None:
    engine = Florence2Ocr(make_config(dtype="bf16", tile_size=64, max_new_tokens=8))
    try:
        from PIL import Image

        assert len(engine.recognize([Image.new("RGB", (64, 64))])) == 1
    finally:
        engine.close()


def test_close_is_idempotent_and_collection_releases(make_config: ConfigFactory) -> None:
    engine = Florence2Ocr(make_config())
    engine.close()
    engine.close()
    assert loading.loaded_keys() == []
    forgotten = Florence2Ocr(make_config())
    assert loading.loaded_keys()
    del forgotten
    gc.collect()
    assert loading.loaded_keys() == []


def test_bad_options_fail_before_loading(make_config: ConfigFactory) -> None:
    for options in ({"tile_size": "big"}, {"overlap": 600}, {"num_beams": -1}):
        with pytest.raises(EngineError):
            Florence2Ocr(make_config(**options))
    assert loading.loaded_keys() == []


def test_missing_checkpoint_is_an_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot load Florence-2"):
        Florence2Ocr(EngineConfig(name="florence2", model=str(tmp_path)))
    assert loading.loaded_keys() == []


def test_resolution_on_cpu() -> None:
    assert loading.resolve_device("auto") == "cpu"
    assert loading.resolve_dtype("auto", "cpu") == "float32"
    assert loading.resolve_dtype("fp16", "cpu") == "float16"
    assert loading.resolve_dtype("BF16", "cpu") == "bfloat16"
    assert loading.resolve_attn(None, "cpu", "float32") == "sdpa"
    assert loading.resolve_attn("eager", "cpu", "float32") == "eager"
    with pytest.raises(EngineError):
        loading.resolve_dtype("int3", "cpu")
    with pytest.raises(EngineError, match="CUDA"):
        loading.resolve_device("cuda:0")
    default = loading.model_key(EngineConfig(name="florence2"))
    assert default == ("florence-community/Florence-2-base", "cpu", "float32", "sdpa")


def test_resolution_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers.utils

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: False)
    assert loading.resolve_device("auto") == "cuda"
    assert loading.resolve_dtype("auto", "cuda") == "bfloat16"
    assert loading.resolve_attn("auto", "cuda", "bfloat16") == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)
    assert loading.resolve_dtype("auto", "cuda") == "float16"
    assert loading.resolve_attn(None, "cuda", "float16") == "flash_attention_2"
    assert loading.resolve_attn(None, "cuda", "bfloat16") == "flash_attention_2"
    assert loading.resolve_attn(None, "cpu", "float16") == "sdpa"
    # flash-attn has no float32 kernels: float32 weights on a GPU get sdpa
    assert loading.resolve_attn(None, "cuda", "float32") == "sdpa"
    cuda_fp32 = EngineConfig(name="florence2", device="cuda", dtype="float32")
    assert loading.model_key(cuda_fp32)[2:] == ("float32", "sdpa")
    assert loading.model_key(EngineConfig(name="florence2"))[1:] == (
        "cuda",
        "float16",
        "flash_attention_2",
    )


def test_vision_tower_stays_off_head_dim_limited_kernels(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flash-attn refuses head dimensions above 256; Florence-2's channel attention
    uses the image tokens (576 and up) as its head dimension. Emulated here with a
    kernel limited to 32 (the tiny text model has 16, its channel attention 64-256)."""
    from PIL import Image
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    used_by: set[str] = set()

    def limited(
        module: torch.nn.Module, query: torch.Tensor, *args: object, **kwargs: object
    ) -> object:
        if query.shape[-1] > 32:
            raise RuntimeError("this kernel only supports head dimension at most 32")
        used_by.add(type(module).__name__)
        return sdpa_attention_forward(module, query, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setitem(AttentionInterface._global_mapping, "limited", limited)
    engine = Florence2Ocr(
        make_config(attn_implementation="limited", tile_size=64, max_new_tokens=8)
    )
    try:
        assert len(engine.recognize([Image.new("RGB", (64, 64))])) == 1
        config = engine.loaded.model.config
        assert config.text_config._attn_implementation == "limited"
        assert config.vision_config._attn_implementation == "sdpa"
        assert used_by == {"BartAttention"}
    finally:
        engine.close()


def test_unavailable_flash_attention_falls_back_to_sdpa(make_config: ConfigFactory) -> None:
    # Asked for explicitly on a machine without flash-attn (or CUDA): it still loads.
    from PIL import Image

    engine = Florence2Ocr(
        make_config(attn_implementation="flash_attention_2", tile_size=64, max_new_tokens=8)
    )
    try:
        config = engine.loaded.model.config
        assert config.text_config._attn_implementation == "sdpa"
        assert len(engine.recognize([Image.new("RGB", (64, 64))])) == 1
    finally:
        engine.close()


def test_importing_the_engine_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import docintel.engines.florence2.engine, docintel.engines.florence2.tiling\n"
        "import docintel.engines.florence2.parsing, docintel.engines.florence2.loading\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hub_offline_is_respected(tmp_path: Path) -> None:
    """With HF_HUB_OFFLINE=1 and an empty cache a hub id fails at once as an
    EngineError, without a single connection attempt (workers have no hub)."""
    code = (
        "import socket\n"
        "attempts = []\n"
        "def refuse(*args, **kwargs):\n"
        "    attempts.append(args[-1] if args else kwargs)\n"
        "    raise OSError('network disabled in this test')\n"
        "socket.getaddrinfo = refuse\n"
        "socket.socket.connect = refuse\n"
        "from docintel.engines.base import EngineConfig, EngineError\n"
        "from docintel.engines.florence2.engine import Florence2Ocr\n"
        "try:\n"
        "    Florence2Ocr(EngineConfig(name='florence2', device='cpu'))\n"
        "except EngineError as error:\n"
        "    print('EngineError', 'Florence-2-base' in str(error))\n"
        "print('attempts', attempts)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split("\n")[:2] == ["EngineError True", "attempts []"], out.stderr[-2000:]


def test_checkpoint_with_scripted_weights_answers_without_hooks(tmp_path: Path) -> None:
    """For tests across processes (a Celery worker): the answer lives in the weights."""
    from PIL import Image

    from tests.fixtures.tiny_florence2 import build_tiny_florence2, loc

    answer = "Total 42.00" + loc(100, 100, 500, 100, 500, 200, 100, 200)
    directory = build_tiny_florence2(tmp_path / "scripted", answer=answer)
    engine = registry.get_ocr_engine(EngineConfig(name="florence2", model=str(directory)))
    (lines,) = engine.recognize([Image.new("RGB", (1000, 500), "white")])
    assert [(ln.text, ln.bbox) for ln in lines] == [("Total 42.00", (100, 50, 500, 100))]
    assert isinstance(engine, Florence2Ocr) and engine.last_run.truncated_kept == 0
