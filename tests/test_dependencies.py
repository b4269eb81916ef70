"""Every library the package imports is installed by `pip install docintel`.

The test environment also has the `dev` extra, so a module that is only a dev
dependency imports fine here and then fails (or silently degrades) on a user's
machine and in the Docker images. This test reads the imports instead.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "docintel"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _closure(names: set[str]) -> set[str]:
    """``names`` and everything they require (unconditionally), as installed here."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in reqs if "extra ==" not in r)
    return seen


def _runtime_imports(tree: ast.AST) -> Iterator[str]:
    """Top-level names of absolute imports, skipping ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _runtime_imports(child))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]
        yield from _runtime_imports(node)


def test_every_imported_library_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    # Extras other than dev are real install options (`.[gpu]`); dev is not.
    optional = {
        _name(r)
        for extra, reqs in project.get("optional-dependencies", {}).items()
        if extra != "dev"
        for r in reqs
    }
    allowed = _closure(runtime) | optional
    distributions = packages_distributions()
    missing: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for module in _runtime_imports(ast.parse(path.read_text())):
            if module in sys.stdlib_module_names or module == "docintel":
                continue
            dists = {_name(d) for d in distributions.get(module, [module])}
            if not dists & allowed:
                missing[module] = str(path.relative_to(ROOT))
    assert not missing, f"imported but not in [project].dependencies: {missing}"
