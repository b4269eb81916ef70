"""Worker process hooks: fresh DB connections after fork, freed memory returned after
each task, engines released at shutdown."""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, worker_process_init, worker_process_shutdown

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    worker_process_init.connect(_after_fork, weak=False)
    worker_process_shutdown.connect(_at_shutdown, weak=False)
    task_postrun.connect(_after_task, weak=False)


def _after_fork(**_: Any) -> None:
    # Pooled connections inherited from the parent must never be shared across processes.
    # close=False: the sockets are the parent's, still in use by its maintenance thread.
    from docintel.db import reset_engines

    reset_engines(close=False)


def _after_task(**_: Any) -> None:
    # Without this a long-lived worker's RSS creeps up page after page (see docintel.memory).
    from docintel.memory import release_free_memory

    release_free_memory()


def _at_shutdown(**_: Any) -> None:
    from docintel.engines.registry import clear_engines

    clear_engines()
