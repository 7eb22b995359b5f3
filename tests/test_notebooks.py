"""Structure of every course notebook (their execution is `pytest --nbmake notebooks/`).

Each ``notebooks/NN_*.ipynb`` must be valid nbformat, committed without outputs, run on the
``python3`` kernel, open with title + badge + "what you will learn", install cell, imports
cell and the one ``parameters`` cell (so papermill and the course runner can inject values),
write out the MONAI code it teaches (what keeps it equal to the package is the notebook's own
equality assertion, run by nbmake), and end with exercises whose solutions are collapsed,
tagged and executed (each after a try cell that calls ``check_exercise``, and each asserting
that check), a recap and a clean-up cell (CONTRIBUTING.md).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

from spleen_helpers.teaching.notebook_cells import colab_badge, install_cell_source

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))

#: The MONAI (and library) calls each lesson writes out in plain cells, outside the solutions.
LESSON_CODE = {
    "01": ["pydicom.dcmread(", "dicom2nifti.dicom_series_to_nifti(", "nib.load(", "nib.as_closest_canonical("],
    "02": ["Compose(", "LoadImaged(", "EnsureChannelFirstd(", "ScaleIntensityRanged(", "CropForegroundd(",
           "Orientationd(", "Spacingd(", "RandCropByPosNegLabeld(", "set_random_state("],
    "03": ["CacheDataset(", "DataLoader(", "UNet(", "DiceCELoss(", "DiceLoss(", "torch.optim.Adam(",
           "DiceMetric(", "loss.backward()", "optimizer.step()", "sliding_window_inference(",
           "decollate_batch(", "AsDiscrete(", "set_determinism(", "lr_scheduler.ExponentialLR(",
           "scheduler.step()", "torch.random.fork_rng()"],
    "04": ["sliding_window_inference(", "Invertd(", "KeepLargestConnectedComponent(", "DiceMetric(",
           "AsDiscrete(", "nib.save(", "compute_hausdorff_distance("],
    "05": ["ConfigParser()", "get_parsed_content(", "instantiate=False", "UNet(**", "torch.load(", "weights_only=True",
           "Compose(", "TurnHeaderd(", "sliding_window_inference(", "window_for(", "Invertd(",
           "hd.seg.SegmentDescription(", "hd.seg.Segmentation(", "generate_uid(", "hd.seg.segread(",
           "header.get_zooms()"],
}
#: How each lesson proves that its written-out code is the package's (a real assertion each).
EQUALITY_PROOFS = {
    "01": ["assert np.array_equal("],
    "02": ["assert_same_pipeline(val_pipeline, val_transforms(cfg))",
           "assert_same_pipeline(train_pipeline, train_transforms(cfg))", "assert_same_data("],
    "03": ["assert proof.history.train_loss == losses", "assert proof.history.val_dice == dices",
           "assert_same_weights(", "assert repr(model) == repr(build_unet(cfg))"],
    "04": ["assert_same_pipeline(infer_pipeline, infer_transforms(cfg))",
           "assert agreement >= 0.999", "np.array_equal(affine, image.affine)",
           "this_case.metrics.dice - 2.0 * (q & r).sum() / (q.sum() + r.sum())",
           "assert abs(toy.hd95_mm - hd95_by_hand) < 1e-3 and abs(toy.asd_mm - asd_by_hand) < 1e-3",
           "assert abs(worst.metrics.hd95_mm - hd95_w)"],
    "05": ["assert_same_weights(bundle_net, package_net)",
           "assert_same_pipeline(bundle_pipeline, infer_transforms(bundle_cfg))",
           "assert_same_pipeline(bundle_pipeline, infer_transforms(bundle_cfg, turned=True))",
           "np.array_equal(affine, ct_img.affine)", "assert agreement >= 0.999",
           "assert abs(ml_from_file - spleen_ml)",
           "assert np.array_equal(mine.pixel_array, theirs.pixel_array)", "get_source_image_uids()"],
}
#: Written-out calls and the proof against the package that must follow at once: in the first
#: lesson cell that makes the call, or in the next code cell.
PROVEN_AT_ONCE = {
    "05": {"ConfigParser()": "assert_same_weights(bundle_net, package_net)",
           "sliding_window_inference(": "assert agreement >= 0.999",
           "Invertd(": "assert agreement >= 0.999",
           "Segmentation(": "assert np.array_equal(mine.pixel_array, theirs.pixel_array)"},
}


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


def tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def lesson_source(nb: nbformat.NotebookNode) -> str:
    """The code of every cell that is not a solution: what a learner reads in the lesson."""
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code" and "solution" not in tags(c))


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
            "(run `python -m spleen_helpers.teaching.notebook_cells`)")
        assert imports.cell_type == "code" and not is_parameters(imports)
        tree = ast.parse(python_source(imports.source))
        kinds = [isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body if not is_magic(n)]
        assert kinds and kinds[0] and sum(kinds) >= len(kinds) - 2, (
            f"{path.name}: the third cell must be the imports cell (imports, then at most a "
            "version print)")
        assert is_parameters(params), f"{path.name}: the fourth cell must be the parameters cell"

    def test_opens_with_what_you_will_learn(self, path: Path) -> None:
        assert "**What you will learn**" in read(path).cells[0].source

    def test_writes_out_the_code_it_teaches_and_proves_it_equal(self, path: Path) -> None:
        nb = read(path)
        lesson = lesson_source(nb)
        missing = [call for call in LESSON_CODE.get(path.name[:2], []) if call not in lesson]
        assert not missing, f"{path.name}: the lesson does not write out {missing}"
        proofs = [p for p in EQUALITY_PROOFS.get(path.name[:2], []) if p not in lesson]
        assert not proofs, f"{path.name}: the equality proof(s) {proofs} are gone"

    def test_proves_each_written_out_step_in_the_same_or_the_next_cell(self, path: Path) -> None:
        code = [c.source for c in read(path).cells if c.cell_type == "code" and "solution" not in tags(c)]
        for call, proof in PROVEN_AT_ONCE.get(path.name[:2], {}).items():
            first = next((i for i, source in enumerate(code) if call in source), None)
            assert first is not None, f"{path.name}: the lesson does not write out {call}"
            assert proof in "\n".join(code[first:first + 2]), (
                f"{path.name}: {proof!r} does not follow {call} in its cell or the next")

    def test_ends_with_exercises_recap_and_cleanup(self, path: Path) -> None:
        cells = read(path).cells
        starts = [i for i, c in enumerate(cells) if c.cell_type == "markdown"
                  and re.search(r"^## Exercises\s*$", c.source, re.MULTILINE)]
        assert len(starts) == 1, f"{path.name}: needs one '## Exercises' section"
        solutions = [i for i, c in enumerate(cells) if "solution" in tags(c)]
        assert 3 <= len(solutions) <= 5, f"{path.name}: {len(solutions)} solution cells, need 3 to 5"
        for i in solutions:  # per exercise: its text, a try cell, "the solution below is collapsed", the solution
            cell = cells[i]
            text, attempt, collapsed = cells[i - 3], cells[i - 2], cells[i - 1]
            assert i - 3 >= starts[0] and text.cell_type == "markdown", (
                f"{path.name}: solution cell {i} must follow its exercise (a markdown cell) in ## Exercises")
            assert attempt.cell_type == "code" and "solution" not in tags(attempt) and re.search(
                r'^check_exercise\("\d\d\.\d", answer\b', attempt.source, re.MULTILINE), (
                f"{path.name}: solution cell {i} must follow a try cell ending in check_exercise(\"NN.K\", answer, ...)")
            assert collapsed.cell_type == "markdown" and "solution below is collapsed" in collapsed.source, (
                f"{path.name}: a short line must say that the solution {i} below is collapsed")
            assert "assert check_exercise(" in cell.source, f"{path.name}: solution cell {i} does not assert its check"
            assert cell.cell_type == "code" and "skip-execution" not in tags(cell), (
                f"{path.name}: solution cell {i} must be code that runs in CI")
            assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
                f"{path.name}: solution cell {i} is not collapsed for JupyterLab (jupyter.source_hidden)")
            assert cell.metadata.get("cellView") == "form" and cell.source.startswith("#@title"), (
                f"{path.name}: solution cell {i} is not collapsed for Colab (cellView form + #@title)")
            assert re.search(r"\bassert(_same_\w+\(| )", cell.source), f"{path.name}: solution cell {i} asserts nothing"
        tail = "\n".join(c.source for c in cells[solutions[-1]:] if c.cell_type == "markdown")
        assert "## Recap" in tail and "Where next" in tail, f"{path.name}: no recap and where-next after the exercises"
        recap = tail.split("## Recap", 1)[1].split("**Where next", 1)[0]
        assert len([line for line in recap.splitlines() if line.startswith("- ")]) == 3, (
            f"{path.name}: the recap should be three points")
        last_code = [c for c in cells if c.cell_type == "code"][-1]
        assert "if cleanup:" in last_code.source, f"{path.name}: the last code cell must be the clean-up"

    def test_one_meaning_per_parameter_name(self, path: Path) -> None:
        """``phantom_seed`` is the phantom's seed in every notebook that makes one; ``seed``
        is only ever the training / patch-sampling seed."""
        nb = read(path)
        params = ast.parse(python_source(next(c for c in nb.cells if is_parameters(c)).source))
        names = {t.id for node in params.body for t in getattr(node, "targets", [getattr(node, "target", None)])
                 if isinstance(t, ast.Name)}
        lesson = lesson_source(nb)
        if "ensure_synthetic_dataset(" in lesson:
            assert "phantom_seed" in names, f"{path.name}: makes a phantom but has no phantom_seed parameter"
            calls = re.findall(r"ensure_synthetic_dataset\(([^)]*)\)", lesson)
            assert all("seed=phantom_seed" in c for c in calls), f"{path.name}: {calls}"
        if "seed" in names:
            assert re.search(r"\bseed=seed\b", lesson), f"{path.name}: parameter seed is not a training seed"
