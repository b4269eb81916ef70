"""Loading once, sharing between engines, releasing on config change; registry wiring."""

from __future__ import annotations

import gc
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
    assert loading.resolve_attn(None, "cpu") == "sdpa"
    assert loading.resolve_attn("eager", "cpu") == "eager"
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
    assert loading.resolve_attn("auto", "cuda") == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(transformers.utils, "is_flash_attn_2_available", lambda: True)
    assert loading.resolve_dtype("auto", "cuda") == "float16"
    assert loading.resolve_attn(None, "cuda") == "flash_attention_2"
    assert loading.resolve_attn(None, "cpu") == "sdpa"


def test_importing_the_engine_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import docintel.engines.florence2.engine, docintel.engines.florence2.tiling\n"
        "import docintel.engines.florence2.parsing, docintel.engines.florence2.loading\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
