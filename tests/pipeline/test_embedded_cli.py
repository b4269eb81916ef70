"""``docintel process`` in embedded mode: a real subprocess, SQLite, no services."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
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


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")} | {
        "DOCINTEL_DATA_DIR": str(tmp_path / "state"),
        "DOCINTEL_RENDER_DPI": "150",
        **extra,
    }


def _argv(tmp_path: Path, *files: Path) -> list[str]:
    out = str(tmp_path / "out")
    return [sys.executable, "-m", "docintel", "process", *map(str, files), "--out", out]


def _process(tmp_path: Path, *files: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(tmp_path, *files),
        env=_env(tmp_path, **env),
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
    # pypdf, asked for a second opinion on this one, logs its repairs to stderr.
    broken = fx.make_corrupt_pdf(tmp_path / "broken.pdf", "truncated")

    result = subprocess.run(
        [*_argv(tmp_path, good, locked, broken), "--quiet"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    # Quiet: nothing but one line per failed file, no library chatter, no traceback.
    failures = result.stderr.splitlines()
    assert len(failures) == 2, result.stderr
    assert failures[0].startswith("docintel:") and "locked.pdf" in failures[0]
    assert "encrypted" in failures[0]
    assert failures[1].startswith("docintel:") and "broken.pdf: failed: corrupt:" in failures[1]
    failed = json.loads((tmp_path / "out" / "locked.json").read_text())
    assert failed["document"]["status"] == "failed"
    assert failed["document"]["error"]["code"] == "encrypted"
    assert json.loads((tmp_path / "out" / "good.json").read_text())["document"]["status"] == "done"


def test_same_file_with_other_options_is_reused_unless_reprocess(tmp_path: Path) -> None:
    pdf = fx.make_text_pdf(tmp_path / "memo.pdf", ["Memo for the whole team"])
    out = tmp_path / "out" / "memo.json"

    def run(*flags: str) -> tuple[subprocess.CompletedProcess[str], str]:
        done = subprocess.run(
            [*_argv(tmp_path, pdf), *flags, "--quiet"],
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return done, json.loads(out.read_text())["pages"][0]["text_source"]

    assert run("--ocr-mode", "never", "--table-engine", "none")[1] == "native"
    reused, source = run("--ocr-mode", "always")
    assert source == "native"
    assert "memo.pdf: same content as document" in reused.stderr
    note = "processed with --ocr-mode never, --table-engine none; reusing its results"
    assert note in reused.stderr
    reprocessed, source = run("--ocr-mode", "always", "--reprocess")
    assert source == "ocr" and reprocessed.stderr == ""


def _pages_by_status(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            rows = conn.execute("SELECT status, count(*) FROM pages GROUP BY status").fetchall()
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return {}
    return dict(rows)


def test_an_interrupted_run_resumes_when_the_file_is_submitted_again(tmp_path: Path) -> None:
    texts = [f"Page {n} of a long report" for n in range(1, 41)]
    path = fx.make_text_pdf(tmp_path / "long.pdf", texts)
    first = subprocess.Popen(
        _argv(tmp_path, path),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "state" / "docintel.db"
    deadline = time.monotonic() + 120
    while _pages_by_status(db).get("done", 0) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no cleanup: pages pending, one maybe claimed
    first.wait(10)
    left = _pages_by_status(db)
    assert left.get("pending"), f"the first run finished before the kill: {left}"
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn, conn:
        # The kill usually lands mid-page; make sure a page is held by the dead run,
        # under a lease that would not lapse for an hour.
        conn.execute(
            "UPDATE pages SET claim_token = 'killed-run', claim_task = 'killed-task',"
            " lease_expires_at = datetime('now', '+1 hour'), claimed_at = CURRENT_TIMESTAMP"
            " WHERE id = (SELECT min(id) FROM pages WHERE status = 'pending')"
            " AND claim_token IS NULL",
        )

    # Before, this waited forever: nothing drives an embedded document but its run.
    # The new run holds the database's lock file, so it knows that no other run is
    # alive and takes the dead run's lease over at once instead of in an hour.
    result = subprocess.run(
        [*_argv(tmp_path, path), "--timeout", "120"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "long.json").read_text())
    assert report["document"]["status"] == "done"
    assert [p["text"] for p in report["pages"]] == texts  # every page, each exactly once


def test_out_that_is_a_file_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from docintel.cli.main import app

    doc = fx.make_text_pdf(tmp_path / "doc.pdf", ["Words"])
    taken = tmp_path / "out"
    taken.write_text("a file, not a folder")
    result = CliRunner().invoke(app, ["process", str(doc), "--out", str(taken)])
    assert result.exit_code == 2, result.output  # click's usage error, with a message
    assert isinstance(result.exception, SystemExit)
    assert "file" in " ".join(result.output.split())


def test_tables_land_in_the_outputs_and_no_tables_turns_them_off(tmp_path: Path) -> None:
    from tests.fixtures.tables import SALES, TableSpec, make_table_pdf

    pdf = make_table_pdf(tmp_path / "sales.pdf", [TableSpec(SALES, text_above=["Sales"])])
    assert _process(tmp_path, pdf).returncode == 0
    page = json.loads((tmp_path / "out" / "sales.json").read_text())["pages"][0]
    (table,) = page["tables"]
    assert table["rows"] == [list(r) for r in SALES] and table["status"] == "done"
    assert {"row", "col", "row_span", "col_span", "text", "bbox"} <= set(table["cells"][0])
    assert "| Region | Units | Revenue | Margin |" in (tmp_path / "out" / "sales.md").read_text()

    result = subprocess.run(
        [*_argv(tmp_path, pdf), "--reprocess", "--no-tables"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    page = json.loads((tmp_path / "out" / "sales.json").read_text())["pages"][0]
    assert page["tables"] == [] and "North" in page["text"]


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path: Path) -> None:
    """Was: 'terminate called without an active exception' and exit 134, OCR threads
    still running under the interpreter's shutdown."""
    texts = [f"Scanned page number {n}" for n in range(1, 9)]
    path = fx.make_scanned_pdf(tmp_path / "scans.pdf", texts, dpi=150)
    first = subprocess.Popen(
        _argv(tmp_path, path),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = tmp_path / "state" / "docintel.db"
    deadline = time.monotonic() + 120
    while _pages_by_status(db).get("done", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stderr
    assert "Run the same command again to resume" in stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr
    assert _pages_by_status(db).get("done", 0) < len(texts), "finished before the Ctrl-C"

    again = subprocess.run(
        [*_argv(tmp_path, path), "--timeout", "120"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    report = json.loads((tmp_path / "out" / "scans.json").read_text())
    assert report["document"]["status"] == "done"
    assert len(report["pages"]) == len(texts)
    assert all(p["status"] == "done" and p["text"] for p in report["pages"])
