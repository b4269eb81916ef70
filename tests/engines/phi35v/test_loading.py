"""Loading: the published parameter list, key checks, configs, checkpoint lookup."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers.utils import is_flash_attn_2_available

from docintel.engines.base import EngineError
from docintel.engines.phi35v import loading
from docintel.engines.phi35v.config import ConfigError, parse_config

GOLDEN = Path(__file__).parent / "golden"


def test_full_size_model_has_exactly_the_published_parameters() -> None:
    """Built from the published config on the meta device (no memory, no weights)."""
    config = json.loads((GOLDEN / "full_size_config.json").read_text())
    expected = {
        name: shape
        for name, shape in json.loads((GOLDEN / "full_size_parameters.json").read_text())
    }
    text, vision = parse_config(config)
    model = loading.build_model(text, vision, "sdpa", "bfloat16")
    ours = {name: list(p.shape) for name, p in model.named_parameters()}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert ours == expected
    assert sum(p.numel() for p in model.parameters()) == 4_146_621_440
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def _copy(source: Path, target: Path, edit: Any = None) -> Path:
    shutil.copytree(source, target)
    if edit is not None:
        path = target / "model.safetensors"
        tensors = load_file(str(path))
        edit(tensors)
        save_file(tensors, str(path), metadata={"format": "pt"})
    return target


def test_a_missing_parameter_is_named(golden_dir: Path, tmp_path: Path) -> None:
    name = "model.layers.1.mlp.gate_up_proj.weight"
    directory = _copy(golden_dir, tmp_path / "ckpt", lambda t: t.pop(name))
    with pytest.raises(EngineError, match=rf"missing from the checkpoint: {name}"):
        loading.load(str(directory), "cpu", "float32")


def test_an_unexpected_parameter_is_named(golden_dir: Path, tmp_path: Path) -> None:
    def add(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.layers.7.self_attn.q_proj.weight"] = torch.zeros(2, 2)

    directory = _copy(golden_dir, tmp_path / "ckpt", add)
    with pytest.raises(EngineError, match=r"unexpected in the checkpoint: model\.layers\.7"):
        loading.load(str(directory), "cpu", "float32")


def test_a_wrong_shape_is_named(golden_dir: Path, tmp_path: Path) -> None:
    def shrink(tensors: dict[str, torch.Tensor]) -> None:
        tensors["model.norm.weight"] = tensors["model.norm.weight"][:10].clone()

    directory = _copy(golden_dir, tmp_path / "ckpt", shrink)
    with pytest.raises(EngineError, match=r"model\.norm\.weight has shape \(10,\)"):
        loading.load(str(directory), "cpu", "float32")


def test_embedding_stored_under_the_reference_alias_loads(golden_dir: Path, tmp_path: Path) -> None:
    """Some exports keep the token embedding only as ``vision_embed_tokens.wte``."""

    def rename(tensors: dict[str, torch.Tensor]) -> None:
        tensors[loading._EMBEDDING_ALIAS] = tensors.pop(loading._EMBEDDING)

    directory = _copy(golden_dir, tmp_path / "ckpt", rename)
    reference = load_file(str(golden_dir / "model.safetensors"))[loading._EMBEDDING]
    loaded = loading.load(str(directory), "cpu", "float32")
    assert torch.equal(loaded.model.model.embed_tokens.weight, reference)


def test_sharded_checkpoint_loads_from_its_index(golden_dir: Path, tmp_path: Path) -> None:
    directory = _copy(golden_dir, tmp_path / "ckpt")
    tensors = load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    names = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    weight_map = {}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded = loading.load(str(directory), "cpu", "float32")
    assert torch.equal(loaded.model.lm_head.weight, tensors["lm_head.weight"])
    assert loaded.model.model.rotary_emb.inv_freq.device.type == "cpu"


def test_half_precision_load_converts_every_tensor(golden_dir: Path) -> None:
    loaded = loading.load(str(golden_dir), "cpu", "bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert loaded.attn_implementation == "sdpa"  # no CUDA: never flash-attn


@pytest.mark.skipif(is_flash_attn_2_available(), reason="flash-attn is installed here")
def test_flash_attention_without_the_package_falls_back_to_sdpa(golden_dir: Path) -> None:
    loaded = loading.load(str(golden_dir), "cpu", "float32", attn="flash_attention_2")
    assert loaded.attn_implementation == "sdpa"


def test_config_of_another_model_is_refused(golden_dir: Path, tmp_path: Path) -> None:
    directory = _copy(golden_dir, tmp_path / "ckpt")
    config = json.loads((directory / "config.json").read_text())
    config["embd_layer"]["hd_transform_order"] = "glb_sub"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineError, match="hd_transform_order"):
        loading.load(str(directory), "cpu", "float32")
    with pytest.raises(ConfigError, match="phi3_v"):
        parse_config({**config, "model_type": "llava"})


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = r"cannot get Phi-3\.5-vision checkpoint 'nobody/nothing'"
    with pytest.raises(EngineError, match=message):
        loading.checkpoint_dir("nobody/nothing")
    with pytest.raises(EngineError, match="not a directory"):
        loading.checkpoint_dir("/no/such/dir")


def test_no_weights_is_a_clear_error(golden_dir: Path, tmp_path: Path) -> None:
    directory = _copy(golden_dir, tmp_path / "ckpt")
    (directory / "model.safetensors").unlink()
    with pytest.raises(EngineError, match="only safetensors"):
        loading.load(str(directory), "cpu", "float32")
