"""Build the sample documents in this folder (run from the repo root).

    python examples/make_examples.py

report-digital.pdf: a born-digital page (real text layer) with a ruled table.
invoice-scan.png:   a scanned-looking page (slightly rotated, noisy) for OCR.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent

REPORT_LINES = [
    (72, 720, 18, "Quarterly Report: Northwind Traders"),
    (72, 690, 11, "Revenue grew in every region this quarter, led by the north."),
    (72, 674, 11, "The table below lists revenue and growth by region."),
]
TABLE = [
    ["Region", "Revenue (kUSD)", "Growth"],
    ["North", "1,240", "12.5%"],
    ["South", "980", "4.1%"],
    ["East", "1,105", "7.9%"],
    ["West", "860", "-2.3%"],
]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_report_pdf(path: Path) -> None:
    ops: list[str] = []
    for x, y, size, text in REPORT_LINES:
        ops.append(f"BT /F1 {size} Tf {x} {y} Td ({_escape(text)}) Tj ET")
    col_x = [72, 200, 360, 470]
    top, row_h = 640, 22
    for r, row in enumerate(TABLE):
        y = top - (r + 1) * row_h + 7
        font = "/F2" if r == 0 else "/F1"
        for c, cell in enumerate(row):
            ops.append(f"BT {font} 11 Tf {col_x[c] + 6} {y} Td ({_escape(cell)}) Tj ET")
    # Ruling lines: what a table detector keys on.
    for r in range(len(TABLE) + 1):
        y = top - r * row_h
        ops.append(f"{col_x[0]} {y} m {col_x[-1]} {y} l S")
    for x in col_x:
        ops.append(f"{x} {top} m {x} {top - len(TABLE) * row_h} l S")
    content = "\n".join(ops).encode("latin-1")

    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))


INVOICE = [
    "INVOICE 2024-0117",
    "Blue Harbor Supplies Ltd.",
    "Bill to: Northwind Traders, 12 Market Street",
    "Office chairs, 4 units at 120.00 = 480.00",
    "Standing desk, 1 unit at 640.00 = 640.00",
    "Total due: 1,120.00 EUR",
]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def make_invoice_scan(path: Path) -> None:
    page = Image.new("L", (1240, 900), 255)
    draw = ImageDraw.Draw(page)
    font = _font(34)
    y = 80
    for line in INVOICE:
        draw.text((90, y), line, fill=20, font=font)
        y += 110
    rng = random.Random(7)
    page = page.rotate(1.2, resample=Image.Resampling.BICUBIC, fillcolor=255, expand=False)
    noisy = page.load()
    assert noisy is not None
    for _ in range(6000):
        x, yy = rng.randrange(page.width), rng.randrange(page.height)
        noisy[x, yy] = rng.choice((0, 90, 180))
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    page.save(path, dpi=(150, 150))


if __name__ == "__main__":
    make_report_pdf(HERE / "report-digital.pdf")
    make_invoice_scan(HERE / "invoice-scan.png")
    print("wrote", HERE / "report-digital.pdf", HERE / "invoice-scan.png")
