"""Every hostile kind through ``docintel process`` in one batch, on an embedded data folder.

One bad file must not stop the others: each gets one line on stderr naming its
error code, the good files (one with spaces and non-ASCII letters in its name)
are written out, and the exit code says that not everything was done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import documents as fx
from tests.hostile.files import HOSTILE

GOOD_NAME = "Rechnung März 日本 ü (1).pdf"


def test_a_batch_of_hostile_files_reports_each_and_processes_the_good_ones(
    tmp_path: Path,
) -> None:
    inputs = [case.write(tmp_path / "in") for case in HOSTILE]
    good = fx.make_text_pdf(tmp_path / "in" / GOOD_NAME, ["A good invoice, total 42 EUR"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    env |= {"DOCINTEL_DATA_DIR": str(tmp_path / "state"), "DOCINTEL_RENDER_DPI": "100"}
    options = ["--out", str(tmp_path / "out"), "--ocr-mode", "never", "--progress", "jsonl"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "docintel", "process", *map(str, [*inputs, good]), *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr

    results = {}
    for line in done.stdout.splitlines():
        event = json.loads(line)
        if event["event"] == "result":
            results[Path(event["file"]).name] = event
    # Warnings (the blank self-reference page has no text) start "docintel: warning:".
    errors = [line for line in done.stderr.splitlines() if ": failed: " in line]
    for case in HOSTILE:
        result = results[case.filename]
        assert result["status"] == case.status, (case.kind, result)
        if case.code is not None:
            assert result["error"].startswith(f"{case.code}: "), (case.kind, result)
            (line,) = [line for line in errors if f"/{case.filename}: " in line]
            assert f"failed: {case.code}: " in line
    assert len(errors) == sum(case.code is not None for case in HOSTILE), done.stderr
    assert results[GOOD_NAME]["status"] == "done"
    written = json.loads(Path(results[GOOD_NAME]["output"]).read_text())
    assert written["document"]["filename"] == GOOD_NAME
    assert written["pages"][0]["text"] == "A good invoice, total 42 EUR"
    assert elapsed < 60, elapsed
