"""Structure of every course notebook (their execution is `pytest --nbmake notebooks/`).

Each ``notebooks/NN_*.ipynb`` must be valid nbformat, committed without outputs, run on the
``python3`` kernel, open with title + badge, install cell, imports cell and the one
``parameters`` cell (so papermill and the course runner can inject values), and keep code
cells short: logic longer than a few lines belongs in ``spleen_helpers``, where it is tested.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import nbformat
import pytest

from spleen_helpers.tools.notebook_cells import colab_badge, install_cell_source

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
MAX_LOGIC_LINES = 25  # generous: catches pipelines pasted into a notebook, not a long print


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def is_parameters(cell: nbformat.NotebookNode) -> bool:
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def python_source(source: str) -> str:
    """A cell's source as plain Python: IPython magics (``%matplotlib inline``) become calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def is_magic(node: ast.stmt) -> bool:
    """``get_ipython().run_line_magic(...)``: what a ``%magic`` line becomes."""
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and "get_ipython()" in ast.unparse(node.value))


def logic_lines(source: str) -> int:
    """Lines that hold code: not blank, not comment-only, not a continuation of a bracket or string."""
    lines: set[int] = set()
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                        tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        if depth == 0:
            lines.add(tok.start[0])
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
    return len(lines)


def test_there_are_notebooks_numbered_consecutively_from_01() -> None:
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(1, len(NOTEBOOKS) + 1)), (
        f"notebook numbers must run 01, 02, ... without gaps or repeats: {[p.name for p in NOTEBOOKS]}")
    stray = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb") if p not in NOTEBOOKS)
    assert not stray, f"notebooks outside the NN_name.ipynb scheme: {stray}"


def test_readme_maps_every_notebook_with_its_colab_badge() -> None:
    readme = (NOTEBOOKS_DIR.parent / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert f"(notebooks/{path.name})" in readme, f"README's course map lacks {path.name}"
        assert colab_badge(path.name) in readme, f"README lacks the Colab badge of {path.name}"


def test_logic_lines_counts_code_not_comments_or_continuations() -> None:
    src = "# a comment\n\nx = f(1,\n      2)  # note\nif x:\n    y = '''a\nb'''\n"
    assert logic_lines(src) == 3
    assert logic_lines(python_source("%matplotlib inline\nimport os\n")) == 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
class TestNotebook:
    def test_is_valid_nbformat(self, path: Path) -> None:
        nb = read(path)
        nbformat.validate(nb)  # raises ValidationError with the offending field
        assert nb.nbformat == 4

    def test_is_committed_without_outputs_or_execution_counts(self, path: Path) -> None:
        dirty = [i for i, c in enumerate(read(path).cells)
                 if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
        assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts (clear them)"

    def test_runs_on_the_python3_kernel(self, path: Path) -> None:
        assert read(path).metadata.get("kernelspec", {}).get("name") == "python3"

    def test_has_exactly_one_parameters_cell_of_plain_assignments(self, path: Path) -> None:
        tagged = [c for c in read(path).cells if is_parameters(c)]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters', need exactly 1"
        cell = tagged[0]
        assert cell.cell_type == "code"
        tree = ast.parse(python_source(cell.source))
        assert tree.body, f"{path.name}: the parameters cell is empty"
        for node in tree.body:  # an injected `name = value` must override each one cleanly
            assert isinstance(node, (ast.Assign, ast.AnnAssign)), (
                f"{path.name}: line {node.lineno} of the parameters cell is not an assignment")
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            assert all(isinstance(t, ast.Name) for t in targets), (
                f"{path.name}: line {node.lineno} of the parameters cell assigns to something "
                "other than a plain name")

    def test_opens_with_title_install_imports_parameters(self, path: Path) -> None:
        cells = read(path).cells
        assert len(cells) >= 5, f"{path.name}: too few cells"
        title, install, imports, params = cells[:4]
        assert title.cell_type == "markdown" and re.match(r"#\s+\S", title.source), (
            f"{path.name}: the first cell must be a markdown title ('# ...')")
        assert colab_badge(path.name) in title.source, f"{path.name}: title lacks its Colab badge"
        hint = (" (it differs only in trailing whitespace)"
                if install.source.rstrip() == install_cell_source().rstrip() else "")
        assert install.cell_type == "code" and install.source == install_cell_source(), (
            f"{path.name}: the second cell must be exactly the install cell{hint} "
            "(run `python -m spleen_helpers.tools.notebook_cells`)")
        assert imports.cell_type == "code" and not is_parameters(imports)
        tree = ast.parse(python_source(imports.source))
        kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body if not is_magic(n)]
        assert kinds and kinds[0] and sum(kinds) >= len(kinds) - 2, (
            f"{path.name}: the third cell must be the imports cell (imports, then at most a "
            "version print)")
        assert is_parameters(params), f"{path.name}: the fourth cell must be the parameters cell"

    def test_code_cells_stay_short(self, path: Path) -> None:
        long = {i: n for i, c in enumerate(read(path).cells) if c.cell_type == "code"
                and (n := logic_lines(python_source(c.source))) > MAX_LOGIC_LINES}
        assert not long, (f"{path.name}: cells {long} (index: logic lines) exceed {MAX_LOGIC_LINES} "
                          "lines; move the logic into spleen_helpers")
