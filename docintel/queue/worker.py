"""Start a Celery worker for the given queues: the entry point behind ``docintel worker``."""

from __future__ import annotations

import os

from docintel.queue.app import app


def start_worker(
    *, queues: list[str], concurrency: int | None, beat: bool, loglevel: str = "info"
) -> None:
    if concurrency is None:
        # One process per GPU: a second would load a second copy of the weights.
        concurrency = 1 if "gpu" in queues else (os.cpu_count() or 1)
    argv = [
        "worker",
        f"--queues={','.join(queues)}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel}",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
    ]
    if beat:
        argv.append("--beat")
    app.worker_main(argv)
