"""The papermill course runner: parameters reach the notebooks, failures stop the course clearly.

One real course notebook (01) is rerun with other parameters and the effect is checked in its
executed copy and its files; small throw-away notebooks exercise failure, timeout and the
summary's validation Dice (read from the run directory's ``history.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from spleen_helpers.tools.course import course_notebooks, notebook_parameters, parse_parameter_value, run_course, select_notebooks
from spleen_helpers.ground.errors import ConfigError, CourseError, DataError


def make_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A minimal notebook: a ``parameters`` cell, then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)
    return path


def executed_text(path: Path) -> str:
    """All stream, text and error outputs of an executed notebook."""
    out = []
    for cell in nbformat.read(path, as_version=4).cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                       or f"{o.get('ename', '')}: {o.get('evalue', '')}")
    return "".join(out)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty course home: nothing a test runs touches the checkout's data/ or runs/."""
    monkeypatch.setenv("SPLEEN_COURSE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.slow
def test_notebook_01_runs_with_injected_case_and_chunk_size(tmp_path: Path, home: Path) -> None:
    from spleen_helpers.data.phantom import PhantomSpec, write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", num_cases=2, seed=3, dicom=True,
                                   spec=PhantomSpec(shape=(40, 40, 16)))
    out = tmp_path / "course"
    summary = run_course(out, data_dir=data, notebooks=["01"], cell_timeout=300,
                         parameters={"dicom_dir": str(data / "dicom" / "spleen_2"), "case": 2,
                                     "slices_per_group": 4})
    assert summary.ok and summary.notebooks[0].status == "ok"
    executed = out / "01_dicom_nifti_basics.ipynb"
    text = executed_text(executed)
    # the notebook's default is case 1 in chunks of 8; the injected values must show instead
    assert "synthetic abdomen CT case 2" in text and "case 1" not in text
    assert "16 slices in groups of 4 -> 4, 4, 4, 4" in text
    assert "spleen_2.nii.gz" in text
    chunks = sorted((out / "outputs" / "01_dicom_nifti_basics" / "chunks").glob("*.nii.gz"))
    assert len(chunks) == 4
    injected = [c for c in nbformat.read(executed, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "slices_per_group = 4" in injected[0].source
    assert "synthetic abdomen CT case 2" in (out / "01_dicom_nifti_basics.html").read_text()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["ok"] and saved["notebooks"][0]["parameters"]["case"] == 2
    assert saved["data_dir"] == str(data.resolve())
    assert "| 01_dicom_nifti_basics.ipynb | ok |" in (out / "summary.md").read_text()
    assert not (home / "data").exists()  # data_dir and dicom_dir given: no phantom made


@pytest.mark.slow
def test_notebook_01_takes_a_study_folder_of_your_own(tmp_path: Path, home: Path) -> None:
    """``dicom_dir`` alone, pointing at a whole study (a localizer, two CT reconstructions, a
    dose report): the notebook picks the CT series by the documented rule and runs to the end."""
    from spleen_helpers.data.phantom import write_phantom_study

    study = write_phantom_study(tmp_path / "study")
    out = tmp_path / "course"
    summary = run_course(out, notebooks=["01"], cell_timeout=300, parameters={"dicom_dir": str(study)})
    assert summary.ok and summary.notebooks[0].status == "ok", summary.notebooks[0]
    text = executed_text(out / "01_dicom_nifti_basics.ipynb")
    assert "chosen: series #3 'abdomen 3 mm'" in text     # the reconstruction with the most slices
    copied = out / "outputs" / "01_dicom_nifti_basics" / "your_series"
    assert len(list(copied.iterdir())) == 23 and not (home / "data").exists()


@pytest.mark.slow
def test_summary_reads_dice_from_history_and_a_failing_cell_stops_the_course(
        tmp_path: Path, home: Path) -> None:
    train = make_notebook(
        tmp_path / "01_train.ipynb", 'run_dir = ""\nepochs = 2',
        "from spleen_helpers.engine.history import TrainingHistory\n"
        "h = TrainingHistory()\n"
        "for e in range(1, epochs + 1):\n"
        "    h.record_epoch(e, 1.0 / e, 0.1)\n"
        "    h.record_validation(e, 0.2 * e)\n"
        "h.save(run_dir)")
    broken = make_notebook(tmp_path / "02_broken.ipynb", "threshold = 0.5",
                           "raise ValueError(f'threshold {threshold} is\\nnot usable')")
    never = make_notebook(tmp_path / "03_never.ipynb", "x = 1", "x")
    out = tmp_path / "course"
    with pytest.raises(CourseError) as info:
        run_course(out, notebooks=[train, broken, never], parameters={"epochs": 3, "threshold": 2},
                   cell_timeout=60)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{out.resolve() / '02_broken.ipynb'}: ")
    assert "ValueError: threshold 2 is not usable" in message
    saved = json.loads((out / "summary.json").read_text())
    assert [n["status"] for n in saved["notebooks"]] == ["ok", "failed", "not run"]
    assert saved["notebooks"][0]["val_dice"] == pytest.approx(0.6)   # 3 epochs were injected
    assert saved["notebooks"][1]["val_dice"] is None                  # it wrote no history
    assert saved["final_val_dice"] == pytest.approx(0.6) and saved["epochs"] == 3
    assert saved["notebooks"][0]["parameters"] == {"run_dir": str(out.resolve() / "run"), "epochs": 3}
    assert "threshold 2" in executed_text(out / "02_broken.ipynb")   # the failed copy is kept
    assert (out / "02_broken.html").is_file() and not (out / "03_never.ipynb").exists()
    assert "**02_broken.ipynb failed:**" in (out / "summary.md").read_text()


@pytest.mark.slow
def test_a_long_notebook_reports_progress_while_it_runs(tmp_path: Path, home: Path) -> None:
    """A line every few seconds with the running cell and the training history's last epoch.

    The notebook's last cell trains (writes a history), then waits until the runner has
    reported that epoch -- or 60 s -- so the test waits for an event, not for a time.
    """
    marker = tmp_path / "reported"
    nb = make_notebook(
        tmp_path / "01_long.ipynb", 'run_dir = ""',
        "import json, time\nfrom pathlib import Path\n"
        "from spleen_helpers.engine.history import TrainingHistory\n"
        "(Path(run_dir) / 'config.json').write_text(json.dumps({'max_epochs': 9}))\n"
        "h = TrainingHistory()\n"
        "for e in (1, 2, 3):\n"
        "    h.record_epoch(e, 1.0 / e, 0.1)\n"
        "    if e == 2:\n"
        "        h.record_validation(e, 0.5)\n"
        "h.save(run_dir)\n"
        f"deadline = time.time() + 60\nwhile not Path({str(marker)!r}).exists() and time.time() < deadline:\n"
        "    time.sleep(0.05)")
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "training epoch 3/9" in line:
            marker.touch()

    summary = run_course(tmp_path / "out", notebooks=[nb], cell_timeout=120, progress=progress,
                         progress_every=0.2)
    assert summary.ok and marker.exists(), lines
    beat = next(line for line in lines if "training epoch 3/9" in line)
    assert beat.startswith("[1/1] 01_long.ipynb: ") and "cell 3 of 3" in beat   # papermill adds a cell
    assert beat.endswith("training epoch 3/9, loss 0.3333, val Dice 0.5000 (epoch 2)")
    assert lines[0] == "[1/1] 01_long.ipynb ..." and lines[-1].startswith("[1/1] 01_long.ipynb ok in ")


@pytest.mark.slow
def test_a_cell_past_the_timeout_fails_the_notebook(tmp_path: Path, home: Path) -> None:
    slow = make_notebook(tmp_path / "01_slow.ipynb", "seconds = 1",
                         "import time\ntime.sleep(seconds)")
    with pytest.raises(CourseError, match=r"01_slow\.ipynb: .*longer than the per-cell timeout of 2 s"):
        run_course(tmp_path / "out", notebooks=[slow], parameters={"seconds": 60}, cell_timeout=2)


def test_unknown_parameter_is_a_config_error_listing_the_known_ones(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_course(tmp_path / "out", notebooks=["01"], parameters={"max_epoch": 3})
    message = str(info.value)
    assert "max_epoch" in message and "known:" in message and "'slices_per_group'" in message
    assert not (tmp_path / "out").exists()  # refused before anything ran or was written


def test_text_for_a_numeric_parameter_is_refused(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="slices_per_group expects a number"):
        run_course(tmp_path / "out", notebooks=["01"], parameters={"slices_per_group": "ten"})


def test_bad_options_are_refused(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        run_course(tmp_path / "out", notebooks=["01"], cell_timeout=0)
    with pytest.raises(DataError, match="is not a directory"):
        run_course(tmp_path / "out", notebooks=["01"], data_dir=tmp_path / "missing")
    with pytest.raises(ConfigError, match="no course notebook matches '99'"):
        run_course(tmp_path / "out", notebooks=["99"])


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 0.001), ("True", True), ("None", None),
    ("[96, 96, 96]", [96, 96, 96]), ("(1.5, 1.5, 2.0)", [1.5, 1.5, 2.0]),  # tuples go in as lists
    ("{'a': 1}", {"a": 1}), ("'007'", "007"), ("007", "007"), ("data/Task09_Spleen", "data/Task09_Spleen"),
    ("cuda:0", "cuda:0"), ("{1, 2}", "{1, 2}"), ("", ""),
])
def test_parse_parameter_value_reads_literals_else_keeps_text(text: str, value: object) -> None:
    assert parse_parameter_value(text) == value
    assert type(parse_parameter_value(text)) is type(value)


def test_parameters_cell_is_parsed_where_papermill_gives_up(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "01_x.ipynb",
                       'data_dir = env_default("SPLEEN_DATA_DIR", "")  # "" = phantom (made on first use)\n'
                       "size: int = 10  # chunk size (None = no split)\n"
                       "a = b = 2\n"
                       "roi = (96,\n       96, 96)\n")
    params = notebook_parameters(nb)
    assert list(params) == ["data_dir", "size", "a", "b", "roi"]
    assert params["data_dir"].default == 'env_default("SPLEEN_DATA_DIR", "")'
    assert params["size"].help == "chunk size (None = no split)"
    assert params["size"].literal_default() == 10
    assert params["roi"].literal_default() == (96, 96, 96)


def test_a_parameters_cell_that_does_not_parse_is_a_config_error(tmp_path: Path) -> None:
    nb = make_notebook(tmp_path / "01_x.ipynb", "x = (")
    with pytest.raises(ConfigError, match=r"01_x\.ipynb: the parameters cell does not parse"):
        notebook_parameters(nb)


def test_notebooks_are_found_through_the_package_and_selected(home: Path) -> None:
    all_nbs = course_notebooks()  # the course home has none: the package's checkout is used
    assert all_nbs and all_nbs == sorted(all_nbs) and all_nbs[0].name.startswith("01_")
    first = all_nbs[0]
    assert select_notebooks(["1"]) == select_notebooks(["01"]) == select_notebooks([first.stem]) == [first]
    assert select_notebooks(None) == all_nbs
    assert select_notebooks(["01", "1"]) == [first]  # no notebook runs twice
    with pytest.raises(DataError, match="no course notebooks"):
        course_notebooks(home)


def test_a_missing_kernel_is_a_config_error_before_anything_is_written(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Jupyter kernel named 'no-such-kernel'"):
        run_course(tmp_path / "out", notebooks=["01"], kernel_name="no-such-kernel")
    assert not (tmp_path / "out").exists()


def test_an_unreadable_history_is_noted_in_the_summary(tmp_path: Path, home: Path) -> None:
    nb = make_notebook(tmp_path / "01_bad_history.ipynb", 'run_dir = ""',
                       "from pathlib import Path\n(Path(run_dir) / 'history.json').write_text('{oops')")
    summary = run_course(tmp_path / "out", notebooks=[nb], cell_timeout=60)
    assert summary.ok and summary.final_val_dice is None
    assert "history.json: is not a valid training history" in summary.history_problem
    assert summary.history_problem in (tmp_path / "out" / "summary.md").read_text()


def test_html_shows_the_viewer_picture_where_no_widget_can_run(tmp_path: Path) -> None:
    """An output that carries a widget and a PNG (the slice viewer) is a picture in the HTML,
    not a widget placeholder that needs JavaScript from a CDN."""
    import base64

    from spleen_helpers.tools.course import _write_html

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n-picture-of-the-first-view").decode()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("viewer", outputs=[
        nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": view, "image/png": png, "text/plain": "viewer"}),
    ])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"abc": {}}, "version_major": 2, "version_minor": 0}}
    nbformat.write(nb, tmp_path / "nb.ipynb")
    _write_html(tmp_path / "nb.ipynb", tmp_path / "nb.html")
    html = (tmp_path / "nb.html").read_text()
    assert f"data:image/png;base64,{png}" in html
    assert '"model_id": "abc"' not in html
