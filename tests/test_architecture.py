"""The package's shape: wings imported one way, no circle, one face for the notebooks, files
and functions short enough to read at a glance (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

import spleen_helpers

PACKAGE = Path(spleen_helpers.__file__).resolve().parent
NOTEBOOKS = sorted((PACKAGE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Imports run from left to right: a module may import its own wing and the wings before it.
WINGS = ("ground", "data", "engine", "teaching", "tools")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[tuple[str, bool]]]:
    """Every module's imports of package modules: ``{importer: {(imported, at_top_level)}}``."""
    found: dict[str, set[tuple[str, bool]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found[me].add((target, id(node) in top))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    if name.startswith("spleen_helpers."):
                        found[me].add((name.removeprefix("spleen_helpers."), id(node) in top))
    return found


def wing(module: str) -> int:
    return WINGS.index(module.split(".")[0]) if module.split(".")[0] in WINGS else -1


def test_imports_run_one_way_through_the_wings() -> None:
    """ground → data → engine → teaching → tools; the engine never imports a teaching aid."""
    against = [(me, target) for me, targets in package_imports().items() if me
               for target, _ in targets if target and wing(target) > wing(me)]
    assert against == []


def test_the_package_has_no_import_circle() -> None:
    graph = {me: {t for t, _ in targets} for me, targets in package_imports().items()}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < 30:
                visit(nxt, path + [nxt])

    for start in graph:
        visit(start, [start])
    assert circles == []


def test_no_module_or_function_is_too_long_to_read_at_a_glance() -> None:
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}: {node.name}() {lines} lines")
    assert too_long == []


def module_all(module: str) -> list[str]:
    tree = ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return [e.value for e in node.value.elts]
    return []


def test_the_face_is_honest() -> None:
    """Every name of ``spleen_helpers.__all__`` is public in the module the face says holds it,
    and is what that module defines."""
    import importlib

    for module, names in spleen_helpers._FACE.items():
        assert wing(module) < WINGS.index("tools"), module
        for name in names:
            assert name in module_all(module), f"{name} is not in spleen_helpers.{module}.__all__"
            assert getattr(spleen_helpers, name) is getattr(importlib.import_module(f"spleen_helpers.{module}"), name)
    assert sorted(spleen_helpers.__all__) == sorted({n for names in spleen_helpers._FACE.values() for n in names})
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        spleen_helpers.not_a_name  # noqa: B018


def test_the_face_loads_nothing_heavy_until_a_name_is_used() -> None:
    """``import spleen_helpers`` and the command line's parser do not import torch or MONAI."""
    code = ("import sys, spleen_helpers, spleen_helpers.tools.cli as cli; cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'monai', 'nibabel', 'pydicom') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def notebook_imports(path: Path) -> list[str]:
    """Every ``import``/``from`` statement of a notebook's code cells that names the package."""
    from IPython.core.inputtransformer2 import TransformerManager

    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(TransformerManager().transform_cell(cell.source))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spleen_helpers"):
                found.append(f"from {node.module} import ...")
            elif isinstance(node, ast.Import):
                found += [f"import {a.name}" for a in node.names if a.name.startswith("spleen_helpers")]
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_take_every_package_name_from_the_face(path: Path) -> None:
    imports = notebook_imports(path)
    assert "from spleen_helpers import ..." in imports
    assert [i for i in imports if i not in ("from spleen_helpers import ...", "import spleen_helpers")] == []
