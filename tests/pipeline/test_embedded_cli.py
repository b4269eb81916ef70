"""``docintel process`` in embedded mode: a real subprocess, SQLite, no services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import documents as fx
from tests.text_metrics import cer

CONTRACT_PAGE_KEYS = {
    "number",
    "width",
    "height",
    "dpi",
    "text_source",
    "status",
    "error",
    "text",
    "markdown",
    "lines",
    "tables",
    "charts",
}


def _process(tmp_path: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")} | {
        "DOCINTEL_DATA_DIR": str(tmp_path / "state"),
        "DOCINTEL_RENDER_DPI": "150",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "docintel",
            "process",
            *map(str, files),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_process_writes_the_contract_json_and_markdown(tmp_path: Path) -> None:
    digital = fx.make_text_pdf(tmp_path / "report.pdf", ["Quarterly report\nAll figures in EUR"])
    scan = tmp_path / "scan.png"
    fx.render_text_image("Hello from a scanned page", (900, 200), dpi=150).save(
        scan, dpi=(150, 150)
    )

    result = _process(tmp_path, digital, scan)
    assert result.returncode == 0, result.stderr

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["document"]) >= {
        "id",
        "filename",
        "sha256",
        "media_type",
        "page_count",
        "status",
        "error",
    }
    assert report["document"]["status"] == "done"
    (page,) = report["pages"]
    assert set(page) >= CONTRACT_PAGE_KEYS
    assert page["text"] == "Quarterly report\nAll figures in EUR"
    assert all(len(line["polygon"]) == 8 for line in page["lines"])
    assert "Quarterly report" in (tmp_path / "out" / "report.md").read_text()

    scanned = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert scanned["document"]["media_type"] == "image/png"
    assert scanned["pages"][0]["text_source"] == "ocr"
    assert cer(scanned["pages"][0]["text"], "Hello from a scanned page") < 0.1


def test_failed_file_gives_nonzero_exit_and_one_stderr_line(tmp_path: Path) -> None:
    good = fx.make_text_pdf(tmp_path / "good.pdf", ["Fine"])
    locked = fx.make_encrypted_pdf(tmp_path / "locked.pdf", user_password="secret")

    result = _process(tmp_path, good, locked)
    assert result.returncode == 1
    failures = [line for line in result.stderr.splitlines() if line.startswith("docintel:")]
    assert len(failures) == 1 and "locked.pdf" in failures[0] and "encrypted" in failures[0]
    failed = json.loads((tmp_path / "out" / "locked.json").read_text())
    assert failed["document"]["status"] == "failed"
    assert failed["document"]["error"]["code"] == "encrypted"
    assert json.loads((tmp_path / "out" / "good.json").read_text())["document"]["status"] == "done"
