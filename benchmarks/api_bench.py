"""The upload API under load, and the latency from upload to result.

Distributed mode on the local PostgreSQL and Redis: ``docintel serve`` (uvicorn)
on loopback with an API key, file-system blob storage.

1. Uploads: ``--clients`` concurrent clients each upload distinct ~1 MB PDFs
   (a one-page text PDF padded with an unreferenced stream, so no two are
   deduplicated) as fast as answers come. Uploads per second, p50/p99 latency.
   No worker runs here: this is the API's own cost (stream to disk, hash,
   store, insert, publish).
2. End to end: one ``docintel worker`` idle and ready; a one-page born-digital
   PDF uploaded, and ``GET /v1/documents/{id}`` polled every 20 ms until done.

    python -m benchmarks.api_bench                     # 200 uploads, 8 clients, 10 e2e runs
    python -m benchmarks.api_bench --uploads 400 --api-workers 2
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.pipeline_bench import (
    db_upgrade,
    docintel_env,
    log,
    markdown_table,
    pg_database,
    redis_database,
)

MiB = 1024 * 1024


def padded_pdf(folder: Path, n: int, size: int) -> Path:
    """A valid one-page PDF of about ``size`` bytes, unique by its padding."""
    from tests.fixtures.documents import make_text_pdf

    path = make_text_pdf(folder / f"upload-{n}.pdf", [f"Benchmark upload {n}"])
    data = path.read_bytes()
    # A comment line after %%EOF is ignored by readers and keeps the PDF valid.
    padding = secrets.token_hex(max(0, size - len(data)) // 2).encode()
    path.write_bytes(data + b"%" + padding + b"\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_api(
    env: dict[str, str], port: int, workers: int, logfile: Path
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "docintel", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    proc = subprocess.Popen(command, env=env, stdout=logfile.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the API did not start:\n{logfile.read_text()[-3000:]}")


@dataclass(frozen=True)
class ApiStack:
    env: dict[str, str]  # the DOCINTEL_* settings every process of the stack shares
    key: str
    url: str
    api: subprocess.Popen[bytes]


@contextmanager
def api_stack(folder: Path, api_workers: int = 1) -> Iterator[ApiStack]:
    """A throwaway database and broker, migrated, an API key, and ``docintel serve``."""
    with pg_database() as database_url, redis_database() as broker_url:
        env = docintel_env(
            folder / "data",
            database_url=database_url,
            broker_url=broker_url,
            storage_url=(folder / "blobs").as_uri(),
        )
        db_upgrade(env)
        key = create_key(env)
        port = free_port()
        api = start_api(env, port, api_workers, folder / "api.log")
        try:
            yield ApiStack(env, key, f"http://127.0.0.1:{port}", api)
        finally:
            api.terminate()
            api.wait(30)


@contextmanager
def running_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One ``docintel worker`` (one process), stopped on the way out."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "docintel", "worker", "--concurrency", "1"],
        env={**env, "OMP_NUM_THREADS": "1"},
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(30)


def create_key(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "docintel", "apikey", "create", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def upload(client: httpx.Client, path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with path.open("rb") as handle:
        answer = client.post("/v1/documents", files={"file": (path.name, handle)})
    return time.perf_counter() - started, answer.status_code


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_uploads(base: str, key: str, files: list[Path], clients: int) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as warm:
        upload(warm, files[0])  # first request: imports, connection pools
    pool = [httpx.Client(base_url=base, headers=headers, timeout=120) for _ in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as executor:
        results = list(
            executor.map(lambda i: upload(pool[i % clients], files[i]), range(1, len(files)))
        )
    elapsed = time.perf_counter() - started
    for client in pool:
        client.close()
    latencies = [seconds for seconds, _ in results]
    statuses = {status for _, status in results}
    size_mb = files[1].stat().st_size / MiB
    return [
        f"{len(results)} x {size_mb:.1f} MB",
        str(clients),
        f"{len(results) / elapsed:.1f}",
        f"{percentile(latencies, 0.5) * 1000:.0f}",
        f"{percentile(latencies, 0.99) * 1000:.0f}",
        ",".join(map(str, sorted(statuses))),
    ]


def bench_end_to_end(base: str, key: str, folder: Path, runs: int) -> list[str]:
    from tests.fixtures.documents import make_text_pdf

    headers = {"Authorization": f"Bearer {key}"}
    times = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for n in range(runs + 1):
            path = make_text_pdf(
                folder / f"e2e-{n}.pdf", [f"End to end {n} {secrets.token_hex(4)}"]
            )
            started = time.perf_counter()
            doc_id = upload_id(client, path)
            while client.get(f"/v1/documents/{doc_id}").json()["document"]["status"] != "done":
                time.sleep(0.02)
            if n:  # the first run loads the worker's modules
                times.append(time.perf_counter() - started)
            time.sleep(0.5)  # the worker is idle again
    return [
        f"{runs} x one-page text PDF",
        f"{statistics.median(times) * 1000:.0f}",
        f"{max(times) * 1000:.0f}",
    ]


def upload_id(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as handle:
        answer = client.post("/v1/documents", files={"file": (path.name, handle)})
    answer.raise_for_status()
    doc_id: str = answer.json()["document_id"]
    return doc_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--e2e-runs", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="docintel-apibench-") as tmp:
        folder = Path(tmp)
        log(f"making {args.uploads + 1} PDFs of {args.size_mb} MB")
        files = [padded_pdf(folder, n, int(args.size_mb * MiB)) for n in range(args.uploads + 1)]
        with api_stack(folder, args.api_workers) as stack:
            log(f"{args.uploads} uploads, {args.clients} clients")
            upload_row = bench_uploads(stack.url, stack.key, files, args.clients)
            with running_worker(stack.env, folder / "worker.log"):
                # The upload phase left 200 split messages; let the worker drain them.
                drain(stack.url, stack.key)
                log(f"end to end, {args.e2e_runs} runs")
                e2e_row = bench_end_to_end(stack.url, stack.key, folder, args.e2e_runs)
    print(f"\n## Uploads ({os.cpu_count()} CPUs, API workers: {args.api_workers})\n")
    header = ["uploads", "clients", "uploads/s", "p50 ms", "p99 ms", "statuses"]
    print(markdown_table(header, [upload_row]))
    print("\n## Upload to done, idle worker\n")
    print(markdown_table(["documents", "p50 ms", "max ms"], [e2e_row]))
    return 0


def drain(base: str, key: str, timeout_s: float = 900) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while time.monotonic() < deadline:
            busy = 0
            for status in ("queued", "processing"):
                page = client.get("/v1/documents", params={"status": status, "limit": 1}).json()
                busy += len(page["items"] if isinstance(page, dict) else page)
            if not busy:
                return
            time.sleep(1)
    raise TimeoutError("the worker did not finish the uploads")


if __name__ == "__main__":
    raise SystemExit(main())
