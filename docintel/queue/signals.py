"""Worker process hooks: fresh DB connections after fork, engines released at shutdown."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init, worker_process_shutdown

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    worker_process_init.connect(_after_fork, weak=False)
    worker_process_shutdown.connect(_at_shutdown, weak=False)


def _after_fork(**_: Any) -> None:
    # Pooled connections inherited from the parent must never be shared across processes.
    from docintel.db import reset_engines

    reset_engines()


def _at_shutdown(**_: Any) -> None:
    from docintel.engines.registry import clear_engines

    clear_engines()
