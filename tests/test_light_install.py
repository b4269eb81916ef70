"""The default path needs none of the model packages (they are the `models` extra).

A user who runs `pip install docintel` gets the text layer, RapidOCR and the CPU
table reader; here torch, transformers and their kin are made unimportable in
a real `docintel process` run, which must still read a scan and a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import documents as fx
from tests.fixtures.tables import SALES, TableSpec, make_table_pdf

MODEL_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub")

_RUN_WITHOUT_MODELS = f"""
import sys
for name in {MODEL_PACKAGES!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
from docintel.cli.main import app
sys.argv[0] = "docintel"
app()
"""


def test_process_reads_scans_and_tables_without_any_model_package(tmp_path: Path) -> None:
    scan = tmp_path / "scan.png"
    fx.render_text_image("Invoice number 12345", (900, 200), dpi=150).save(scan, dpi=(150, 150))
    tables = make_table_pdf(tmp_path / "tables.pdf", [TableSpec(SALES)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCINTEL_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RUN_WITHOUT_MODELS,
            "process",
            str(scan),
            str(tables),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env | {"DOCINTEL_DATA_DIR": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    scanned = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert scanned["pages"][0]["text_source"] == "ocr"
    assert "Invoice number 12345" in scanned["pages"][0]["text"]
    (table,) = json.loads((tmp_path / "out" / "tables.json").read_text())["pages"][0]["tables"]
    assert table["status"] == "done" and table["rows"][0] == list(SALES[0])


def test_a_model_engine_without_the_packages_says_how_to_get_them() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "from docintel.engines.base import EngineConfig\n"
        "from docintel.engines.registry import get_extraction_engine\n"
        "try:\n"
        "    get_extraction_engine(EngineConfig(name='phi35v'))\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (
        "the phi35v engine needs the model packages (torch is missing): "
        "pip install 'docintel[models]'"
    ), out.stderr


def test_the_model_packages_are_an_extra() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    required = " ".join(project["dependencies"])
    assert not [name for name in ("torch", "transformers") if name in required]
    assert any(r.startswith("torch") for r in project["optional-dependencies"]["models"])
