"""Fixtures: one tiny random Florence-2 checkpoint per session, engines built from it."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docintel.engines import registry
from docintel.engines.base import EngineConfig
from docintel.engines.florence2 import loading
from tests.fixtures.tiny_florence2 import build_tiny_florence2

ConfigFactory = Callable[..., EngineConfig]


@pytest.fixture(scope="session")
def tiny_florence2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_florence2(tmp_path_factory.mktemp("tiny_florence2"))


@pytest.fixture(scope="session")
def lively_florence2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights whose answers depend on the image and prompt; its tokenizer
    pads on the left, as some checkpoints' tokenizer configs say."""
    directory = tmp_path_factory.mktemp("lively_florence2")
    return build_tiny_florence2(directory, lively=True, padding_side="left")


@pytest.fixture
def make_config(tiny_florence2_dir: Path) -> ConfigFactory:
    """EngineConfig for the tiny checkpoint; keyword arguments become options.

    The device is the CPU unless ``DOCINTEL_TEST_DEVICE`` names another (the
    engine tests run on a GPU that way: ``DOCINTEL_TEST_DEVICE=cuda``), and
    ``DOCINTEL_TEST_DTYPE`` sets the default dtype.
    """
    device = os.environ.get("DOCINTEL_TEST_DEVICE", "cpu")
    default_dtype = os.environ.get("DOCINTEL_TEST_DTYPE", "auto")

    def make(batch_size: int = 8, dtype: str = default_dtype, **options: Any) -> EngineConfig:
        return EngineConfig(
            name="florence2",
            model=str(tiny_florence2_dir),
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            options=tuple(sorted(options.items())),
        )

    return make


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from threads, and on a busy 2-core machine
    OpenMP spin-waiting makes each generate call up to 100x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _models_released() -> Iterator[None]:
    """Every test must leave no model loaded: engines are closed or collected."""
    yield
    registry.clear_engines()
    if loading.loaded_keys():  # engines not closed are released when collected
        gc.collect()
    assert loading.loaded_keys() == []


@pytest.fixture(scope="session")
def processor(tiny_florence2_dir: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_florence2_dir)


@pytest.fixture(scope="session")
def tokenizer(processor: Any) -> Any:
    return processor.tokenizer
