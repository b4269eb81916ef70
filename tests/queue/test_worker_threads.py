"""A worker divides the CPUs among its pool processes for OCR (see share_cpus_among_pool)."""

from __future__ import annotations

import pytest

from docintel.pipeline.routing import ocr_engine_config
from docintel.queue.worker import ocr_threads_per_process, share_cpus_among_pool, usable_cpus
from docintel.settings import Settings


@pytest.mark.parametrize(
    ("cpus", "concurrency", "threads"), [(16, 16, 1), (16, 4, 4), (16, 3, 5), (2, 8, 1), (8, 1, 8)]
)
def test_threads_per_process(cpus: int, concurrency: int, threads: int) -> None:
    assert ocr_threads_per_process(cpus, concurrency) == threads


def test_pool_processes_get_their_share() -> None:
    environ: dict[str, str] = {}
    share_cpus_among_pool(concurrency=usable_cpus(), environ=environ)
    assert environ == {"DOCINTEL_OCR_THREADS": "1"}


def test_a_configured_thread_count_is_kept() -> None:
    environ = {"DOCINTEL_OCR_THREADS": "3"}
    share_cpus_among_pool(concurrency=64, environ=environ)
    assert environ == {"DOCINTEL_OCR_THREADS": "3"}


def test_the_setting_reaches_the_engine_config() -> None:
    assert ocr_engine_config(Settings(ocr_threads=2)).threads == 2
    assert ocr_engine_config(Settings()).threads is None
