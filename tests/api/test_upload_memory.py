"""Uploads are streamed: a real ``docintel serve`` on loopback keeps its memory flat
whatever the upload's size, and refuses one over the limit while it streams."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests import services
from tests.api.server import running_api

MiB = 1024 * 1024


@pytest.fixture
def server(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], psutil.Process]]:
    """The API alone, distributed: it stores and queues, and no worker runs, so all the
    memory it uses is the upload's."""
    with services.redis_database() as broker:
        env = {
            "DOCINTEL_DATA_DIR": str(tmp_path / "state"),
            "DOCINTEL_DATABASE_URL": pg_url,
            "DOCINTEL_BROKER_URL": broker,
            "DOCINTEL_STORAGE_URL": (tmp_path / "blobs").as_uri(),
            "DOCINTEL_MAX_UPLOAD_BYTES": str(96 * MiB),
        }
        key = subprocess.run(
            [sys.executable, "-m", "docintel", "apikey", "create", "memory test"],
            env=_without_docintel() | env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        with running_api(env) as api:
            yield api.url, {"Authorization": f"Bearer {key}"}, api.process


def _without_docintel() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}


class PeakRss:
    """The highest resident memory of a process while the block runs, sampled every 20 ms."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.before = process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.before) / MiB


def _pdf_like(path: Path, size: int) -> Path:
    """``size`` bytes that sniff as a PDF (they fail later, at the split: that is fine)."""
    chunk = os.urandom(MiB)
    with path.open("wb") as out:
        out.write(b"%PDF-1.7\n")
        for _ in range(size // MiB):
            out.write(chunk)
    return path


def _post(base: str, headers: dict[str, str], path: Path) -> int:
    with path.open("rb") as handle:
        try:
            answer = httpx.post(
                f"{base}/v1/documents",
                files={"file": (path.name, handle)},
                headers=headers,
                timeout=120,
            )
        except httpx.HTTPError:
            return -1  # the server may close the connection as soon as it refuses
    return answer.status_code


@pytest.mark.postgres
@pytest.mark.redis
def test_memory_stays_flat_for_large_uploads_and_the_limit_cuts_the_stream(
    server: tuple[str, dict[str, str], psutil.Process], tmp_path: Path
) -> None:
    base, key, process = server
    assert _post(base, key, _pdf_like(tmp_path / "warm.pdf", MiB)) == 202  # imports, pools
    small = _pdf_like(tmp_path / "small.pdf", 4 * MiB)
    with PeakRss(process) as on_small:
        assert _post(base, key, small) == 202
    large = _pdf_like(tmp_path / "large.pdf", 80 * MiB)
    with PeakRss(process) as on_large:
        assert _post(base, key, large) == 202
    # 20x the bytes, about the same memory: nothing holds the upload whole.
    growth = (on_small.growth_mib, on_large.growth_mib)
    assert on_large.growth_mib < on_small.growth_mib + 16, growth

    too_large = _pdf_like(tmp_path / "too-large.pdf", 300 * MiB)
    with PeakRss(process) as on_refused:
        started = time.monotonic()
        assert _post(base, key, too_large) in (413, -1)
    assert on_refused.growth_mib < 16, on_refused.growth_mib
    assert time.monotonic() - started < 60
    # Nothing of the refused upload is kept: the blob store holds the accepted files.
    blobs = sum(p.stat().st_size for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    assert blobs < 90 * MiB
