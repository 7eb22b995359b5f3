"""The install cell that opens every notebook: what it does in Colab, locally, and when broken.

The cell's source (``spleen_helpers.teaching.notebook_cells.install_cell_source``) is executed as a
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

from spleen_helpers.ground.errors import DataError
from spleen_helpers.teaching.notebook_cells import colab_badge, colab_install_command, install_cell_source, sync_notebook

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
    # written out here, not built with the module's own helpers: what pip really receives
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet",
                      "spleen-course @ git+https://github.com/spleen-course/spleen-course.git@main"]]
    assert colab_install_command()[1:] == calls[0][1:]       # the documented command is the one run


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
        "(run `python -m spleen_helpers.teaching.notebook_cells`)")
    assert install.cell_type == "code", f"{path.name}: the second cell is not a code cell"
    hint = (" (it differs only in trailing whitespace)"
            if install.source.rstrip() == install_cell_source().rstrip() else "")
    assert install.source == install_cell_source(), (
        f"{path.name}: the second cell is not exactly the current install cell{hint}: "
        "run `python -m spleen_helpers.teaching.notebook_cells`")


# ----------------------------------------------------------------------- sync_notebook
BADGE_URL = ("https://colab.research.google.com/github/spleen-course/spleen-course/blob/main/"
             "notebooks/05_extra.ipynb")


def write_notebook(path: Path, title: str, *cells: nbformat.NotebookNode) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(title), *cells]
    nbformat.write(nb, path)
    return path


def test_sync_notebook_rewrites_an_outdated_badge_and_install_cell(tmp_path: Path) -> None:
    old_badge = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                 "(https://colab.research.google.com/github/someone/old/blob/v0/notebooks/05_extra.ipynb)")
    lesson = nbformat.v4.new_code_cell("x = 1")
    lesson.outputs = [nbformat.v4.new_output("stream", text="kept\n")]
    path = write_notebook(tmp_path / "05_extra.ipynb", f"# 05 · Extra\n\n{old_badge}\n\nText.",
                          nbformat.v4.new_code_cell("import google.colab  # an older install cell"), lesson)
    assert sync_notebook(path) is True
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.splitlines() == ["# 05 · Extra", "", colab_badge("05_extra.ipynb"), "", "Text."]
    assert BADGE_URL in nb.cells[0].source and "someone/old" not in nb.cells[0].source
    assert nb.cells[1].source == install_cell_source()
    assert [c.source for c in nb.cells[2:]] == ["x = 1"] and nb.cells[2].outputs[0]["text"] == "kept\n"
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]
    written = path.read_bytes()
    assert sync_notebook(path) is False and path.read_bytes() == written   # up to date: untouched


def test_sync_notebook_inserts_what_is_missing_and_loses_no_cell(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "05_extra.ipynb", "# 05 · Extra\nNo badge yet.",
                          nbformat.v4.new_code_cell("import numpy as np"), nbformat.v4.new_code_cell("np.pi"))
    assert sync_notebook(path) is True
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].source.splitlines() == ["# 05 · Extra", "", colab_badge("05_extra.ipynb"), "No badge yet."]
    assert nb.cells[1].source == install_cell_source()
    assert [c.source for c in nb.cells[2:]] == ["import numpy as np", "np.pi"]   # inserted, not overwritten
    assert sync_notebook(path) is False


def test_sync_notebook_refuses_what_it_cannot_fix_and_keeps_the_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "05_broken.ipynb"
    broken.write_text("{ not json")
    with pytest.raises(DataError, match="05_broken.ipynb: is not a readable notebook") as info:
        sync_notebook(broken)
    assert "\n" not in str(info.value)
    untitled = tmp_path / "05_untitled.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, untitled)
    with pytest.raises(DataError, match="first cell must be the markdown title cell"):
        sync_notebook(untitled)
    # a write that fails half-way leaves the notebook as it was
    path = write_notebook(tmp_path / "05_extra.ipynb", "# 05 · Extra", nbformat.v4.new_code_cell("x = 1"))
    before = path.read_bytes()

    def broken_write(nb, fp, *args, **kwargs):
        Path(fp).write_text("{ half")
        raise OSError("No space left on device")

    monkeypatch.setattr(nbformat, "write", broken_write)
    with pytest.raises(OSError, match="No space"):
        sync_notebook(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["05_broken.ipynb", "05_extra.ipynb", "05_untitled.ipynb"]
