"""Freed heap memory goes back to the OS after each task (see docintel.memory)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="malloc_trim is glibc's"
)

ROOT = Path(__file__).resolve().parent.parent


def test_trim_returns_a_fragmented_heap() -> None:
    # In a fresh process, so this test's own heap history does not matter: 200 MiB
    # of 100 KiB blocks (below glibc's mmap threshold, so on the heap), every tenth
    # kept alive so that plain free() cannot shrink the heap from its top.
    script = textwrap.dedent(
        """
        import psutil
        from docintel.memory import release_free_memory

        def rss():
            return psutil.Process().memory_info().rss / 2**20

        blocks = [bytearray(100_000) for _ in range(2_000)]
        kept = blocks[::10]
        del blocks
        before = rss()
        assert release_free_memory()
        print(before, rss(), len(kept))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    before, after = float(out[0]), float(out[1])
    assert before - after > 100, (before, after)


def test_tasks_give_memory_back_after_they_run() -> None:
    from celery.signals import task_postrun

    import docintel.queue.app  # noqa: F401  (installs the worker hooks)
    from docintel.queue import signals

    # Connected with weak=False, so the receivers are the functions themselves.
    assert signals._after_task in [receiver for _, receiver in task_postrun.receivers]
