"""Overload: 300 documents arrive at once for a single worker.

Distributed mode on the local PostgreSQL and Redis. Half the documents are
uploaded through ``docintel serve`` by 8 concurrent clients, the other half
given to one ``docintel process`` command (which submits them all and waits);
one ``docintel worker`` drains the queue. Checked: every document done, none
failed with ``timeout`` or left behind. Reported: seconds to drain, and the
peak RSS of the API, the CLI and the worker (each with its children), sampled
every 0.2 s.

    python -m benchmarks.overload_bench                  # 300 documents, 2 pages each
    python -m benchmarks.overload_bench --documents 1000 --pages 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.api_bench import api_stack, running_worker
from benchmarks.pipeline_bench import MIB, TreeSampler, log, markdown_table


def make_documents(folder: Path, count: int, pages: int, tag: str) -> list[Path]:
    from tests.fixtures.documents import make_text_pdf

    folder.mkdir(parents=True, exist_ok=True)
    return [
        make_text_pdf(
            folder / f"{tag}-{n}.pdf",
            [f"Overload {tag} document {n} page {k}\nsecond line" for k in range(1, pages + 1)],
        )
        for n in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="docintel-overload-") as tmp:
        folder = Path(tmp)
        tag = str(int(time.time()))
        half = args.documents // 2
        by_api = make_documents(folder / "api", half, args.pages, f"api{tag}")
        by_cli = make_documents(folder / "cli", args.documents - half, args.pages, f"cli{tag}")
        with api_stack(folder) as stack, TreeSampler() as rss:
            rss.watch("api", stack.api.pid)
            with running_worker(stack.env, folder / "worker.log") as worker:
                rss.watch("worker", worker.pid)
                started = time.monotonic()
                out = ["--out", str(folder / "out"), "--quiet", "--timeout", str(args.timeout)]
                cli = subprocess.Popen(
                    [sys.executable, "-m", "docintel", "process", *map(str, by_cli), *out],
                    env=stack.env,
                    stdout=subprocess.DEVNULL,
                    stderr=(folder / "cli.log").open("wb"),
                )
                rss.watch("cli", cli.pid)
                ids = upload_all(stack.url, stack.key, by_api)
                log(f"{len(ids)} uploads answered in {time.monotonic() - started:.1f} s")
                cli_code = cli.wait(args.timeout)
                statuses = wait_all(stack.url, stack.key, ids, args.timeout)
                drained = time.monotonic() - started
            cli_errors = (folder / "cli.log").read_text(errors="replace").strip()
    api_done = sum(s == "done" for s in statuses)
    rows = [
        [
            args.documents,
            args.pages,
            f"{api_done}/{len(by_api)}",
            "all done" if cli_code == 0 else f"exit {cli_code}",
            f"{drained:.0f}",
            f"{args.documents * args.pages / drained:.1f}",
            *(f"{rss.peak([label]).tree / MIB:.0f}" for label in ("api", "cli", "worker")),
        ]
    ]
    header = [
        "documents", "pages each", "API done", "CLI", "drain s", "pages/s",
        "API peak MiB", "CLI peak MiB", "worker peak MiB",
    ]  # fmt: skip
    print("\n## 300 documents at once, one worker\n")
    print(markdown_table(header, rows))
    if cli_errors:
        print(f"\nCLI said:\n{cli_errors[:2000]}")
    return 0 if api_done == len(by_api) and cli_code == 0 else 1


def upload_all(base: str, key: str, files: list[Path]) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}

    def send(path: Path) -> str:
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            with path.open("rb") as handle:
                answer = client.post("/v1/documents", files={"file": (path.name, handle)})
            answer.raise_for_status()
            doc_id: str = answer.json()["document_id"]
            return doc_id

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(send, files))


def wait_all(base: str, key: str, ids: list[str], timeout_s: float) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while True:
            statuses = [
                client.get(f"/v1/documents/{doc_id}/job").json()["status"] for doc_id in ids
            ]
            if all(s not in ("queued", "processing") for s in statuses):
                return statuses
            if time.monotonic() > deadline:
                return statuses
            time.sleep(2)


if __name__ == "__main__":
    raise SystemExit(main())
