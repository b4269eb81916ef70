"""A real ``docintel serve`` (uvicorn) on a free loopback port, for tests over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psutil


@dataclass(frozen=True)
class RunningApi:
    url: str
    process: psutil.Process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_api(env: dict[str, str], timeout_s: float = 60) -> Iterator[RunningApi]:
    """``env``: the DOCINTEL_* settings; nothing else of this process's DOCINTEL_* leaks in."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "docintel", "serve", "--port", str(port)],
        env=base | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"docintel serve exited with {proc.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield RunningApi(url, psutil.Process(proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
