"""The opening every course notebook shares, defined in one place.

Each notebook starts with: a title cell with an Open-in-Colab badge, the install cell
(:func:`install_cell_source`: installs this package in Colab when it is missing, does nothing
locally), an imports cell printing versions, then the one cell tagged ``parameters``.
The repository URL and the git ref Colab installs from are :data:`REPO_URL` and
:data:`REPO_REF`; ``tests/test_notebooks.py`` checks every notebook against this module, and
``python -m spleen_helpers.teaching.notebook_cells`` rewrites the opening cells after a change here.

Example:
    >>> colab_install_command()[-1]
    'spleen-course @ git+https://github.com/spleen-course/spleen-course.git@main'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["REPO_SLUG", "REPO_URL", "REPO_REF", "colab_install_command", "colab_badge", "install_cell_source", "sync_notebook"]


REPO_SLUG = "spleen-course/spleen-course"


REPO_URL = f"https://github.com/{REPO_SLUG}.git"


REPO_REF = "main"  # the branch or tag that Colab installs from


def colab_install_command(python: str = "python") -> list[str]:
    """The exact pip command the install cell runs in Colab."""
    return [python, "-m", "pip", "install", "--quiet",
            f"spleen-course @ git+{REPO_URL}@{REPO_REF}"]


def colab_badge(notebook_name: str) -> str:
    """Markdown for an Open-in-Colab badge pointing at ``notebooks/<notebook_name>``."""
    url = f"https://colab.research.google.com/github/{REPO_SLUG}/blob/{REPO_REF}/notebooks/{notebook_name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_cell_source() -> str:
    """Source of the install cell: pip-installs the package in Colab only when it is missing."""
    cmd = colab_install_command()[1:]
    return (
        "# Set-up: in Colab this installs the course package (once per runtime);\n"
        "# locally `make setup` already did, and this cell does nothing.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        "try:\n"
        "    import google.colab  # noqa: F401  (importable only in Colab)\n"
        "    IN_COLAB = True\n"
        "except ImportError:\n"
        "    IN_COLAB = False\n"
        "\n"
        "try:\n"
        "    import spleen_helpers  # noqa: F401\n"
        "except ImportError:\n"
        "    if not IN_COLAB:\n"
        "        raise ImportError(\"spleen_helpers is not installed: run `make setup` in the course \"\n"
        "                          \"folder and choose the .venv's python3 kernel\") from None\n"
        "    subprocess.check_call([sys.executable, " + ", ".join(f'"{c}"' for c in cmd) + "])\n"
    )


def _is_install_cell(cell: Any) -> bool:
    """A code cell that does what the install cell does (an older version of it, too)."""
    return cell.get("cell_type") == "code" and "import google.colab" in cell.get("source", "")


def sync_notebook(path: str | os.PathLike) -> bool:
    """Rewrite the badge and the install cell of one notebook; return True if it changed.

    The badge line of the title cell is replaced (or added after the heading when missing);
    the second cell is replaced when it is an install cell (it imports ``google.colab``),
    otherwise the install cell is inserted before it, so no cell of the notebook is lost.
    The file is rewritten atomically and only when something changed.

    >>> sync_notebook("notebooks/01_dicom_nifti_basics.ipynb")   # doctest: +SKIP
    False
    """
    import nbformat

    from ..ground.errors import DataError
    from ..ground.files import atomic_path

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"is not a readable notebook ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        raise DataError(path, "the first cell must be the markdown title cell (# NN · Title)")
    changed = False
    title = nb.cells[0]
    lines = title.source.splitlines()
    badge = colab_badge(path.name)
    new_lines = [badge if line.startswith("[![Open In Colab]") else line for line in lines]
    if new_lines == lines and badge not in lines:
        new_lines = lines[:1] + ["", badge] + lines[1:]
    if new_lines != lines:
        title.source, changed = "\n".join(new_lines), True
    source = install_cell_source()
    if len(nb.cells) > 1 and _is_install_cell(nb.cells[1]):
        if nb.cells[1].source != source:
            nb.cells[1].source, changed = source, True
    else:
        nb.cells.insert(1, nbformat.v4.new_code_cell(source))
        changed = True
    if changed:
        with atomic_path(path) as tmp:
            nbformat.write(nb, str(tmp))
    return changed


if __name__ == "__main__":  # pragma: no cover - maintenance helper
    import sys

    from ..ground.paths import PACKAGE_DIR

    notebooks = sorted((PACKAGE_DIR.parent / "notebooks").glob("[0-9]*.ipynb"))
    for nb_path in notebooks:
        print(("updated " if sync_notebook(nb_path) else "ok      ") + nb_path.name)
    sys.exit(0)
