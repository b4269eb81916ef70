"""PDFium is not thread-safe: pages of PDFs processed on several threads must not crash.

Embedded mode and threaded callers process pages on more than one thread. In a
subprocess, because the failure this guards against is a segmentation fault.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures import documents as fx

SCRIPT = """
import sys, threading
from pathlib import Path
from docintel.document.sources import PdfSource
from docintel.document.textlayer import extract_text_lines, page_image_coverage

path = Path(sys.argv[1])

def work():
    for i in range(30):
        n = i % 5 + 1
        extract_text_lines(path, n, 150)
        page_image_coverage(path, n)
        with PdfSource(path, max_page_pixels=10**8, dpi=150) as source:
            source.check_page(n)

threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_text_layer_and_page_checks_on_many_threads(tmp_path: Path) -> None:
    pages = [f"Page {n} has words\nand a second line" for n in range(1, 6)]
    path = fx.make_text_pdf(tmp_path / "shared.pdf", pages)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "ok"
