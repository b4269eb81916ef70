"""``docintel sources`` and the embedded ``docintel beat``, as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import documents as fx


def _docintel(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "docintel", *args],
        env=env | {"DOCINTEL_DATA_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_add_list_scan_remove(tmp_path: Path) -> None:
    inbox = tmp_path / "Eingang Rechnungen"
    inbox.mkdir()
    added = _docintel(tmp_path, "sources", "add", "invoices", str(inbox), "--ocr-mode", "never")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"source invoices: {inbox.resolve()}"

    again = _docintel(tmp_path, "sources", "add", "invoices", str(tmp_path))
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    bad = _docintel(tmp_path, "sources", "add", "ftp", "ftp://example.com/in")
    assert bad.returncode == 1 and "s3://bucket/prefix" in bad.stderr
    unknown = _docintel(tmp_path, "sources", "add", "x", str(inbox), "--chart-engine", "magic")
    assert unknown.returncode == 1 and "chart_engine must be one of" in unknown.stderr

    fx.make_text_pdf(inbox / "bill.pdf", ["Amount due 12.00"])
    assert "1 waiting until unchanged" in _docintel(tmp_path, "sources", "scan").stderr
    time.sleep(1.05)  # sightings less than a second apart do not count
    assert "1 imported" in _docintel(tmp_path, "sources", "scan").stderr
    listed = _docintel(tmp_path, "sources", "list").stdout
    assert listed.startswith(f"invoices\t{inbox.resolve()}\tscanned 20")
    assert "imported 1 seen 0 failed 0" in listed

    shown = _docintel(tmp_path, "list", "--source", "invoices")
    assert "\tdone\t1\t" in shown.stdout and shown.stdout.rstrip().endswith("bill.pdf")

    assert _docintel(tmp_path, "sources", "remove", "invoices").returncode == 0
    assert _docintel(tmp_path, "sources", "list").stdout == ""
    missing = _docintel(tmp_path, "sources", "remove", "invoices")
    assert missing.returncode == 1 and "no source named 'invoices'" in missing.stderr


def test_embedded_beat_scans_on_schedule_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    assert _docintel(tmp_path, "sources", "add", "in", str(inbox)).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    beat = subprocess.Popen(
        [sys.executable, "-m", "docintel", "beat"],
        env=env | {"DOCINTEL_DATA_DIR": str(tmp_path / "state"), "DOCINTEL_SCAN_INTERVAL_S": "0.5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        fx.make_text_pdf(inbox / "a.pdf", ["scheduled"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Filed away when taken; processed right after, in this embedded beat.
            if "\tdone\t" in _docintel(tmp_path, "list", "--source", "in").stdout:
                break
            time.sleep(0.5)
        assert (inbox / "processed" / "a.pdf").exists()
    finally:
        beat.send_signal(signal.SIGINT)
        out, _ = beat.communicate(timeout=30)
    assert beat.returncode == 130, out
    assert "in: 1 files, 1 imported" in out
    assert "interrupted; finished pages are kept" in out
    assert "Traceback" not in out
