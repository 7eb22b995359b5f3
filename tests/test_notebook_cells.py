"""The install cell that opens every notebook: what it does in Colab, locally, and when broken.

The cell's source (``spleen_helpers.tools.notebook_cells.install_cell_source``) is executed as a
notebook would execute it, with ``google.colab`` faked or hidden, ``spleen_helpers`` importable
or not, and ``subprocess.check_call`` replaced by a recorder, so no pip runs. Every course
notebook must open with the badge and exactly this cell.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import nbformat
import pytest

from spleen_helpers.tools.notebook_cells import (
    REPO_REF,
    REPO_URL,
    colab_badge,
    colab_install_command,
    install_cell_source,
)

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("0*.ipynb"))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Arguments of every ``subprocess.check_call`` made while the test runs (nothing is run)."""
    recorded: list[list[str]] = []

    def record(cmd: list[str], *args: Any, **kwargs: Any) -> int:
        recorded.append(list(cmd))
        return 0

    monkeypatch.setattr(subprocess, "check_call", record)
    return recorded


def in_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import google.colab`` succeed, as it does only in Colab."""
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    google.colab = colab  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)


def not_in_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import google.colab`` fail, whatever is installed here."""
    monkeypatch.setitem(sys.modules, "google.colab", None)


def package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import spleen_helpers`` fail, as on a fresh Colab runtime."""
    monkeypatch.setitem(sys.modules, "spleen_helpers", None)


def run_cell() -> dict[str, Any]:
    """Execute the install cell in a fresh namespace, as the first code cell of a notebook."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(install_cell_source(), "<install cell>", "exec"), namespace)
    return namespace


def test_in_colab_without_the_package_pip_installs_the_pinned_repo(
    monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    in_colab(monkeypatch)
    package_missing(monkeypatch)
    namespace = run_cell()
    assert namespace["IN_COLAB"] is True
    assert calls == [[sys.executable] + colab_install_command()[1:]]
    command = calls[0]
    assert command[1:5] == ["-m", "pip", "install", "--quiet"]
    assert command[-1] == f"spleen-course @ git+{REPO_URL}@{REPO_REF}"
    assert REPO_URL.startswith("https://github.com/") and REPO_URL.endswith(".git")
    assert REPO_REF and "@" not in REPO_REF and " " not in REPO_REF


def test_in_colab_with_the_package_installed_nothing_is_installed_again(
    monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    in_colab(monkeypatch)
    namespace = run_cell()
    assert namespace["IN_COLAB"] is True
    assert calls == []


def test_locally_with_the_package_installed_the_cell_does_nothing(
    monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    not_in_colab(monkeypatch)
    namespace = run_cell()
    assert namespace["IN_COLAB"] is False
    assert calls == []


def test_locally_without_the_package_the_cell_says_to_run_make_setup(
    monkeypatch: pytest.MonkeyPatch, calls: list[list[str]]
) -> None:
    not_in_colab(monkeypatch)
    package_missing(monkeypatch)
    with pytest.raises(ImportError, match=r"spleen_helpers is not installed: run `make setup`") as info:
        run_cell()
    assert "\n" not in str(info.value)
    assert info.value.__suppress_context__  # `from None`: one clear message, no chained traceback
    assert calls == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_with_badge_and_install_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert len(nb.cells) >= 2, f"{path.name}: fewer than two cells"
    title, install = nb.cells[0], nb.cells[1]
    assert title.cell_type == "markdown", f"{path.name}: the first cell is not the title cell"
    assert colab_badge(path.name) in title.source, (
        f"{path.name}: the title cell lacks the Open-in-Colab badge for this notebook "
        "(run `python -m spleen_helpers.tools.notebook_cells`)")
    assert install.cell_type == "code", f"{path.name}: the second cell is not a code cell"
    hint = (" (it differs only in trailing whitespace)"
            if install.source.rstrip() == install_cell_source().rstrip() else "")
    assert install.source == install_cell_source(), (
        f"{path.name}: the second cell is not exactly the current install cell{hint}: "
        "run `python -m spleen_helpers.tools.notebook_cells`")
