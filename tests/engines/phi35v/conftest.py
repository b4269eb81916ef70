"""Fixtures: the golden checkpoint made by the reference code, and one built here."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docintel.engines import registry
from docintel.engines.base import EngineConfig
from tests.fixtures.tiny_phi35v import build_tiny_phi35v

GOLDEN = Path(__file__).parent / "golden"

ConfigFactory = Callable[..., EngineConfig]


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / "golden.json").read_text())
    return data


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN / "tiny-phi35v"


@pytest.fixture(scope="session")
def tiny_phi35v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_phi35v(tmp_path_factory.mktemp("tiny_phi35v"))


@pytest.fixture
def make_config(tiny_phi35v_dir: Path) -> ConfigFactory:
    """EngineConfig for the tiny checkpoint; keyword arguments become options.

    The CPU in float32 unless ``DOCINTEL_TEST_DEVICE`` / ``DOCINTEL_TEST_DTYPE``
    say otherwise (``DOCINTEL_TEST_DEVICE=cuda`` runs the engine tests on a GPU).
    """
    device = os.environ.get("DOCINTEL_TEST_DEVICE", "cpu")
    dtype = os.environ.get("DOCINTEL_TEST_DTYPE", "float32")

    def make(batch_size: int = 8, **options: Any) -> EngineConfig:
        return EngineConfig(
            name="phi35v",
            model=str(tiny_phi35v_dir),
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            options=tuple(sorted(options.items())),
        )

    return make


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy 2-core machine OpenMP
    spin-waiting makes each call many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    registry.clear_engines()
