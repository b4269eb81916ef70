"""Point this test process (and the worker processes it starts) at a given setup.

Settings, engines, blob stores and the Celery app are process-wide caches;
``use_settings`` resets all of them so each test sees exactly its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from docintel.settings import Settings


def apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return reset_process_state()


def reset_process_state() -> Settings:
    """Settings, engines, blob stores and the Celery app afresh from the environment."""
    from docintel.db import reset_engines
    from docintel.pipeline import context
    from docintel.queue.app import app, configure
    from docintel.settings import get_settings

    get_settings.cache_clear()
    reset_engines()
    context._store.cache_clear()
    settings = get_settings()
    configure(app, settings)
    # Celery makes its broker connection pools on the first publish and never looks
    # at broker_url again: without this, a test would publish to the previous
    # test's broker (and, after a test with a dead broker, to nowhere).
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    return settings


def base_env(tmp: Path, database_url: str, broker_url: str = "") -> dict[str, str]:
    return {
        "DOCINTEL_DATA_DIR": str(tmp / "data"),
        "DOCINTEL_DATABASE_URL": database_url,
        "DOCINTEL_BROKER_URL": broker_url,
        "DOCINTEL_STORAGE_URL": (tmp / "blobs").resolve().as_uri(),
        "DOCINTEL_RENDER_DPI": "150",
    }


class WorkerProcess:
    """A real ``docintel worker`` in its own process group, so SIGKILL takes it all."""

    def __init__(self, env: dict[str, str], queues: str = "cpu", concurrency: int = 1) -> None:
        self.log_path = Path(env["DOCINTEL_DATA_DIR"]) / f"worker-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "docintel",
                "worker",
                f"--queues={queues}",
                f"--concurrency={concurrency}",
                "--loglevel=info",
            ],
            # One BLAS thread per process: on 2 cores, oversubscribed torch is 100x slower.
            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool children): no cleanup, no acks."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP the whole worker: it holds its leases but renews nothing."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def pids(self) -> set[int]:
        """The worker's main process and its pool processes."""
        import psutil

        main = psutil.Process(self.proc.pid)
        return {main.pid, *(child.pid for child in main.children(recursive=True))}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused worker cannot stop
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@contextmanager
def running_worker(env: dict[str, str], **kwargs: object) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(env, **kwargs)  # type: ignore[arg-type]
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started
