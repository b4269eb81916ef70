"""Who may import whom (DESIGN.md, Boundaries). Each test fails when a boundary breaks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "docintel"


def _modules_after_import(*modules: str) -> set[str]:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print('\\n'.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def test_models_import_nothing_of_celery_engines_storage_or_api() -> None:
    loaded = _modules_after_import("docintel.models")
    forbidden = {
        "celery",
        "torch",
        "transformers",
        "boto3",
        "docintel.engines",
        "docintel.storage",
        "docintel.queue",
    }
    assert not forbidden & ({*loaded, *_top(loaded)})


@pytest.mark.parametrize(
    "module", ["docintel.engines.rapidocr_engine", "docintel.engines.florence2.engine"]
)
def test_engines_know_no_database_queue_or_storage(module: str) -> None:
    loaded = _modules_after_import(module)
    assert not {"sqlalchemy", "celery", "boto3"} & _top(loaded)
    assert not {"docintel.db", "docintel.models", "docintel.storage", "docintel.queue"} & loaded


def test_cli_service_and_tasks_start_without_torch() -> None:
    loaded = _top(
        _modules_after_import("docintel.cli.main", "docintel.service", "docintel.queue.tasks")
    )
    assert not {"torch", "transformers", "onnxruntime", "rapidocr"} & loaded


def test_stages_reach_engines_only_through_the_registry() -> None:
    allowed = {"docintel.engines", "docintel.engines.base", "docintel.engines.registry"}
    for folder in ("pipeline", "queue", "cli"):
        for path in (PACKAGE / folder).glob("*.py"):
            engine_imports = {n for n in _imports_of(path) if n.startswith("docintel.engines")}
            assert engine_imports <= allowed, f"{path.name} imports {engine_imports - allowed}"
            assert not {"torch", "transformers", "rapidocr", "onnxruntime"} & _top(
                _imports_of(path)
            )


def test_tasks_carry_json_not_pickle() -> None:
    from docintel.queue.app import app

    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost


def test_page_analysis_imports_no_stage_database_queue_storage_or_engine() -> None:
    """``docintel.document`` is pure page analysis: stages call it, never the reverse."""
    allowed = {"docintel.document", "docintel.errors", "docintel.geometry"}
    for path in [
        *(PACKAGE / "document").glob("*.py"),
        PACKAGE / "errors.py",
        PACKAGE / "geometry.py",
    ]:
        ours = {n for n in _imports_of(path) if n.startswith("docintel")}
        assert ours <= allowed | {
            f"docintel.document.{p.stem}" for p in (PACKAGE / "document").glob("*.py")
        }, (
            path.name,
            ours,
        )
    loaded = _modules_after_import("docintel.document.reading_order", "docintel.document.render")
    assert not {"celery", "sqlalchemy", "torch", "docintel.pipeline", "docintel.storage"} & loaded
