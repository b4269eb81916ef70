"""Start a Celery worker for the given queues: the entry point behind ``docintel worker``."""

from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from celery import bootsteps

from docintel.queue.app import app
from docintel.settings import get_settings

log = logging.getLogger(__name__)


def start_worker(
    *, queues: list[str], concurrency: int | None, loglevel: str = "info", beat: bool = False
) -> None:
    if concurrency is None:
        # One process per GPU: a second would load a second copy of the weights.
        concurrency = 1 if "gpu" in queues else usable_cpus()
    share_cpus_among_pool(concurrency)
    for problem in get_settings().timing_problems():
        print(f"docintel: warning: {problem}", file=sys.stderr)
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
        # Scans overlap safely (docintel.ingestion.scan), so a beat in every worker
        # that asks for one costs only repeated listings, never a double import.
        argv += ["--beat", f"--schedule={_beat_schedule_file()}"]
    _run_maintenance_beside(queues)
    app.worker_main(argv)


def _run_maintenance_beside(queues: list[str]) -> None:
    """Every worker reports in and takes its turn at the sweep, from its main process.

    Started once the pool has forked (``worker_ready``). Pool processes forked
    later (to replace one that died) inherit the thread's pooled connections and
    drop them unclosed (``docintel.queue.signals``).
    """
    from celery.signals import worker_ready, worker_shutdown

    from docintel.queue.maintenance import Maintenance

    maintenance = Maintenance(queues)

    def start(**_: Any) -> None:
        maintenance.start()

    def stop(**_: Any) -> None:
        maintenance.stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
    app.steps["consumer"].add(ResendAfterReconnect)


class ResendAfterReconnect(bootsteps.StartStopStep):
    """After the broker connection broke and came back, send all waiting work again.

    A message the broker handed over as the connection died (popped from its list,
    not yet in the unacked set) is gone, though the broker kept its data: nothing
    else would notice before ``DOCINTEL_STUCK_AFTER_S``. Duplicates are harmless
    (claims are fenced), and of several workers reconnecting at once only the first
    sweep re-sends (a new broker epoch). Celery starts consumer steps again on each
    reconnection.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)  # once consuming again

    def start(self, c: Any) -> None:
        if c.restart_count > 0:  # 0 on the first connection, counted up on each new one
            threading.Thread(target=_resend_waiting, name="docintel-resend", daemon=True).start()


def _resend_waiting() -> None:
    from docintel.queue.maintenance import sweep_turn

    for _ in range(30):  # another process may hold the sweep this very moment
        try:
            if sweep_turn(force=True, messages_lost=True) is not None:
                return
        except Exception:
            log.warning("re-sending after a reconnection failed; trying again", exc_info=True)
        time.sleep(1)


def usable_cpus() -> int:
    """CPUs this process may run on: a container's cpuset, not the host's core count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def share_cpus_among_pool(concurrency: int, environ: MutableMapping[str, str] = os.environ) -> None:
    """Give each pool process its share of the CPUs for OCR, unless configured.

    onnxruntime takes every core per process by default; a pool of N such
    processes then runs N x cores threads that spin against each other. Measured
    on 2 cores with two processes reading scans: 10.8 s a page each with the
    default, 8.2 s with one thread each (+32% pages/s).
    """
    if "DOCINTEL_OCR_THREADS" in environ or get_settings().ocr_threads is not None:
        return
    # Pool processes are forked after this and read their settings afresh.
    environ["DOCINTEL_OCR_THREADS"] = str(ocr_threads_per_process(usable_cpus(), concurrency))
    get_settings.cache_clear()


def ocr_threads_per_process(cpus: int, concurrency: int) -> int:
    return max(1, cpus // max(1, concurrency))


def start_beat(loglevel: str = "info") -> None:
    """Celery beat alone (``docintel beat``): sends the source scans on schedule."""
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={_beat_schedule_file()}"])


def _beat_schedule_file() -> str:
    """A schedule file of this process's own.

    Beat keeps in it when each entry last ran, under a lock: two beats sharing one
    (a data volume mounted in several containers) would fight over it. Losing it
    costs nothing here: the scan simply runs at start.
    """
    folder = Path(tempfile.gettempdir()) / "docintel-beat"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"schedule-{socket.gethostname()}-{os.getpid()}")
