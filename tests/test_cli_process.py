"""The command line as a new user meets it: --version, db revisions, a batch with a bad
path, progress and summaries, words instead of silence, and where state is kept.

Each test runs the real ``docintel`` in a subprocess against a SQLite data directory.
"""

from __future__ import annotations

import json
import os
import pty
import re
import sqlite3
import subprocess
import sys
import uuid
from importlib.metadata import version
from pathlib import Path

from docintel.cli.report import FileResult, progress_line, summary_line
from docintel.models import DocumentStatus
from docintel.service import Progress
from tests.fixtures import documents as fx


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")} | {
        "DOCINTEL_DATA_DIR": str(tmp_path / "state"),
        "DOCINTEL_RENDER_DPI": "100",
        **extra,
    }


def _docintel(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docintel", *args],
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_version_prints_the_installed_package_version(tmp_path: Path) -> None:
    shown = _docintel(tmp_path, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"docintel {version('docintel')}\n"
    assert not (tmp_path / "state").exists()  # nothing touched for a version


def test_db_upgrade_and_downgrade_both_take_a_positional_revision(tmp_path: Path) -> None:
    db = tmp_path / "schema.db"
    url = f"sqlite:///{db}"

    def at(*args: str) -> str | None:
        done = _docintel(tmp_path, "db", *args, DOCINTEL_DATABASE_URL=url)
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        return rows[0][0] if rows else None

    head = at("upgrade")  # the default: head
    first = at("downgrade", "base")
    assert head and first is None
    assert at("upgrade", "0001") == "0001"  # as positional as downgrade's
    assert at("upgrade", "head") == head
    assert at("downgrade", "0001") == "0001"


def test_one_bad_path_is_reported_and_the_others_are_processed(tmp_path: Path) -> None:
    first = fx.make_text_pdf(tmp_path / "first.pdf", ["First file"])
    second = fx.make_text_pdf(tmp_path / "second.pdf", ["Second file"])
    missing, folder = tmp_path / "missing.pdf", tmp_path / "a folder.pdf"
    folder.mkdir()
    out = tmp_path / "out"
    inputs = [first, missing, folder, second]

    result = _docintel(tmp_path, "process", *map(str, inputs), "--out", str(out), "--quiet")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"docintel: {missing}: no such file",
        f"docintel: {folder}: is a folder, not a file",
    ]
    for path in (first, second):
        assert json.loads((out / f"{path.stem}.json").read_text())["document"]["status"] == "done"
    assert sorted(p.name for p in out.iterdir()) == [
        "first.json",
        "first.md",
        "second.json",
        "second.md",
    ]


def test_summary_per_file_on_stderr_unless_quiet(tmp_path: Path) -> None:
    report = fx.make_text_pdf(tmp_path / "report.pdf", ["One", "Two", "Three"])
    out = tmp_path / "out"
    result = _docintel(
        tmp_path, "process", str(report), str(tmp_path / "gone.pdf"), "--out", str(out)
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"docintel: {tmp_path / 'gone.pdf'}: no such file"
    assert re.fullmatch(
        rf"{re.escape(str(report))}: done, 3 pages, \d+\.\d s -> {out}/report.json", lines[1]
    )
    assert lines[2] == f"{tmp_path / 'gone.pdf'}: not read"
    assert len(lines) == 3

    quiet = _docintel(tmp_path, "process", str(report), "--out", str(out), "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_jsonl_progress_gives_scripts_events_and_a_result_per_file(tmp_path: Path) -> None:
    scan = fx.make_image_page_pdf(tmp_path / "scan.pdf", text_lines=("Invoice 42",), dpi=100)
    digital = fx.make_text_pdf(tmp_path / "digital.pdf", ["Born digital", "Page two"])
    out = tmp_path / "out"
    argv = [str(scan), str(digital), str(tmp_path / "nope.pdf"), "--out", str(out)]
    # A slow render keeps the scan in flight across several polls of the progress.
    result = _docintel(
        tmp_path,
        "process",
        *argv,
        "--progress",
        "jsonl",
        DOCINTEL_TEST_STAGE_DELAYS='{"render": 1.2}',
    )
    assert result.returncode == 1, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    results = {e["file"]: e for e in events if e["event"] == "result"}

    in_flight = [e for e in progress if e["file"] == str(scan) and e["status"] != "done"]
    assert in_flight and {e["stage"] for e in in_flight} <= {
        "queued",
        "split",
        "render",
        "ocr",
        "render, ocr",
        "tables",
        "finishing",
    }
    assert progress[-1]["status"] == "done" and progress[-1]["pages_done"] == 2
    assert list(results) == [str(scan), str(digital), str(tmp_path / "nope.pdf")]
    assert results[str(digital)]["status"] == "done" and results[str(digital)]["pages"] == 2
    assert results[str(digital)]["output"] == str(out / "digital.json")
    assert results[str(scan)]["seconds"] >= 1.2  # its render alone took that long
    assert results[str(tmp_path / "nope.pdf")] | {"seconds": 0} == {
        "event": "result",
        "file": str(tmp_path / "nope.pdf"),
        "document_id": None,
        "status": "not_read",
        "pages": 0,
        "seconds": 0,
        "output": None,
        "error": "no such file",
        "warnings": [],
    }
    # Errors still reach a person on stderr; the human summary does not repeat them there.
    assert result.stderr.splitlines() == [f"docintel: {tmp_path / 'nope.pdf'}: no such file"]


def test_a_terminal_shows_documents_pages_and_the_stage(tmp_path: Path) -> None:
    scan = fx.make_image_page_pdf(tmp_path / "scan.pdf", text_lines=("Receipt",), dpi=100)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "docintel", "process", str(scan), "--out", str(tmp_path / "o")],
        env=_env(tmp_path, DOCINTEL_TEST_STAGE_DELAYS='{"render": 1.2}'),
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    text = shown.decode()
    assert re.search(r"documents 0/1 · pages 0/1 \[-{20}\] · render", text), text
    assert "documents 1/1 · pages 1/1 [####################]" in text
    assert f"{scan}: done, 1 page, " in text


def test_progress_and_summary_lines_read_as_documented() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    state = [
        Progress(ids[0], DocumentStatus.DONE, 10, 10, "done"),
        Progress(ids[1], DocumentStatus.PROCESSING, 30, 2, "ocr"),
        Progress(ids[2], DocumentStatus.QUEUED, 0, 0, "queued"),
    ]
    assert progress_line(state, 3, 10) == "documents 1/3 · pages 12/40 [###-------] · ocr, queued"
    done = FileResult(Path("in/a.pdf"), "done", 1, 2.04, Path("out/a.json"))
    assert summary_line(done) == "in/a.pdf: done, 1 page, 2.0 s -> out/a.json"


def test_ocr_mode_never_on_an_image_says_why_it_has_no_text(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    fx.render_text_image("Words in pixels", (600, 150), dpi=100).save(image, dpi=(100, 100))
    text_pdf = fx.make_text_pdf(tmp_path / "text.pdf", ["Has a text layer"])
    out = tmp_path / "out"
    args = ["process", str(image), str(text_pdf), "--out", str(out), "--ocr-mode", "never"]
    result = _docintel(tmp_path, *args, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"docintel: warning: {image}: no text: it is an image, and --ocr-mode never skips OCR"
    ]
    page = json.loads((out / "photo.json").read_text())["pages"][0]
    assert page["status"] == "done" and page["text"] == ""


def test_the_reuse_note_names_the_earlier_options_in_words(tmp_path: Path) -> None:
    memo = fx.make_text_pdf(tmp_path / "memo.pdf", ["Memo"])
    out = str(tmp_path / "out")
    assert _docintel(tmp_path, "process", str(memo), "--out", out).returncode == 0
    again = _docintel(tmp_path, "process", str(memo), "--out", out, "--ocr-mode", "always", "-q")
    assert again.returncode == 0, again.stderr
    (note,) = again.stderr.splitlines()
    assert "processed with the default options; reusing its results" in note
    assert "{" not in note


def test_state_goes_to_the_user_data_directory_not_the_current_folder(tmp_path: Path) -> None:
    here = tmp_path / "somewhere"
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")  # where platformdirs puts user data on Linux
    shown = subprocess.run(
        [sys.executable, "-m", "docintel", "show", "report.pdf"],
        env=env,
        cwd=here,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 1 and "no document 'report.pdf'" in shown.stderr
    assert list(here.iterdir()) == []  # no .docintel/ left where it was run
    assert (tmp_path / "xdg" / "docintel" / "docintel.db").exists()

    env["DOCINTEL_DATA_DIR"] = str(tmp_path / "chosen")
    subprocess.run(
        [sys.executable, "-m", "docintel", "list"], env=env, cwd=here, check=True, timeout=120
    )
    assert (tmp_path / "chosen" / "docintel.db").exists() and list(here.iterdir()) == []
