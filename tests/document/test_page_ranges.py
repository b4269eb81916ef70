"""Page ranges: parsed as people write them, applied to a document of N pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docintel.document.page_ranges import parse_page_range, select_pages
from tests.fixtures import documents as fx


@pytest.mark.parametrize(
    ("text", "count", "pages"),
    [
        ("1-3,7", 10, [1, 2, 3, 7]),
        ("10-", 12, [10, 11, 12]),
        (" 2 , 2-4 ,3", 10, [2, 3, 4]),  # overlaps once each, spaces allowed
        ("5-99", 7, [5, 6, 7]),  # cut at the last page
        ("8-9", 7, []),
        ("1", 1, [1]),
    ],
)
def test_select_pages(text: str, count: int, pages: list[int]) -> None:
    assert select_pages(text, count) == pages


@pytest.mark.parametrize("text", ["", "0", "3-1", "a-b", "1-2-3", "-4", "1;2", "1,,2"])
def test_nonsense_is_refused_with_the_part_named(text: str) -> None:
    with pytest.raises(ValueError, match=r"pages count from 1|is not a page"):
        parse_page_range(text)


def test_process_reads_only_the_pages_asked_for(tmp_path: Path) -> None:
    pdf = fx.make_text_pdf(tmp_path / "four.pdf", [f"Page number {n}" for n in range(1, 5)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    env["DOCINTEL_DATA_DIR"] = str(tmp_path / "state")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "docintel", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    bad = run("process", str(pdf), "--out", str(tmp_path / "o"), "--pages", "3-1")
    assert bad.returncode == 1 and bad.stderr.startswith("docintel: --pages: '3-1'")
    done = run("process", str(pdf), "--out", str(tmp_path / "o"), "--pages", "2,4-", "-q")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "o" / "four.json").read_text())
    assert result["document"]["page_count"] == 4  # the document's, all of it
    assert [(p["number"], p["text"]) for p in result["pages"]] == [
        (2, "Page number 2"),
        (4, "Page number 4"),
    ]
