"""The ``spleen-course`` command line: help for every subcommand, exit codes, one-line errors."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

from spleen_helpers import __version__
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.tools.cli import build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return sorted(actions[0].choices)


SUBCOMMANDS = subcommands()


def test_the_course_subcommands_are_there() -> None:
    assert {"synth", "dicom2nifti", "train", "evaluate", "predict", "download",
            "run-course"} <= set(SUBCOMMANDS)


def test_the_package_never_reaches_into_the_checkout() -> None:
    """The benchmarks run as ``python -m benchmarks`` from a checkout; the installed package
    neither imports them nor edits ``sys.path``."""
    import re

    import spleen_helpers

    root = Path(spleen_helpers.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "sys.path" not in text, path
        # the face's lazy loading (PEP 562) is the one dynamic import: of the package's own modules
        if path != root / "__init__.py":
            assert "importlib" not in text, path
        else:
            assert 'importlib.import_module(f".{module}", __name__)' in text
        assert not re.search(r"^\s*(import|from)\s+benchmarks\b", text, re.MULTILINE), path


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: spleen-course {command}")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["no-such-command"], [], ["synth", "--no-such-option"]])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: spleen-course" in capsys.readouterr().err


def test_synth_writes_a_small_data_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synthetic"
    assert main(["synth", "--out", str(out), "--cases", "2", "--shape", "12", "40", "48", "--seed", "4"]) == 0
    assert str(out) in capsys.readouterr().out
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and len(meta["training"]) == 2
    img = nib.load(out / meta["training"][1]["image"])
    assert img.shape == (48, 40, 12)  # --shape is slices, rows, columns; NIfTI is x, y, z
    assert nib.load(out / meta["training"][1]["label"]).shape == img.shape


def test_course_error_is_one_line_on_stderr_and_exit_2(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synthetic"
    assert main(["synth", "--out", str(out), "--cases", "1", "--shape", "8", "32", "32"]) == 0
    capsys.readouterr()
    before = (out / "dataset.json").read_bytes()
    assert main(["synth", "--out", str(out), "--cases", "1", "--shape", "8", "32", "32"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in captured.err
    assert err.startswith("error: ") and str(out / "dataset.json") in err and "--force" in err
    assert (out / "dataset.json").read_bytes() == before  # nothing was overwritten
    assert main(["synth", "--out", str(out), "--cases", "1", "--shape", "8", "32", "32", "--force"]) == 0


def test_zero_cases_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["synth", "--out", str(tmp_path / "s"), "--cases", "0"])
    assert info.value.code == 2 and "must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_run_course_unknown_parameter_is_one_line_exit_2(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run-course", "--output-dir", str(tmp_path / "c"), "--only", "01",
                 "-p", "no_such_parameter", "3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: unknown notebook parameter(s) ['no_such_parameter']")
    assert not (tmp_path / "c").exists()


def test_run_course_refuses_bad_values_before_running(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # text where the notebook's default is a number...
    assert main(["run-course", "--only", "01", "-p", "slices_per_group", "ten",
                 "--output-dir", str(tmp_path / "c")]) == 2
    assert "expects a number" in capsys.readouterr().err
    # ...a zero timeout, a notebook that does not exist
    assert main(["run-course", "--only", "01", "--timeout", "0", "--output-dir", str(tmp_path / "c")]) == 2
    assert "timeout" in capsys.readouterr().err
    assert main(["run-course", "--only", "42", "--output-dir", str(tmp_path / "c")]) == 2
    assert "no course notebook matches '42'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


SCRIPT = Path(sys.executable).parent / "spleen-course"


@pytest.mark.skipif(not SCRIPT.exists() and shutil.which("spleen-course") is None,
                    reason="the spleen-course console script is not installed (pip install -e .)")
def test_console_script_runs(tmp_path: Path) -> None:
    exe = str(SCRIPT) if SCRIPT.exists() else str(shutil.which("spleen-course"))
    done = subprocess.run([exe, "synth", "--out", str(tmp_path / "s"), "--cases", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "positive integer" in done.stderr


@pytest.mark.parametrize("argv, expected", [
    (["train", "--out", "RUN", "--roi-size", "1024", "1024", "1024"], "larger than allowed"),
    (["train", "--out", "RUN", "--patch-size", "90", "90", "90"], "divisible by 16"),
    (["train", "--out", "RUN", "--cache-rate", "1.5"], "cache_rate"),
])
def test_train_refuses_out_of_range_settings(argv: list[str], expected: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from spleen_helpers.data.phantom import PhantomSpec, write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "d", num_cases=3, spec=PhantomSpec(shape=(24, 24, 8)))
    argv = [a.replace("RUN", str(tmp_path / "run")) for a in argv] + ["--data-dir", str(data)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ train
TINY_TRAIN = ["--channels", "4", "8", "16", "--strides", "2", "2", "--patch-size", "16", "16", "16",
              "--roi-size", "32", "32", "32", "--pixdim", "6", "6", "6", "--val-count", "2",
              "--num-samples", "2", "--device", "cpu", "--no-progress"]


@pytest.mark.slow
def test_train_trains_resumes_and_says_where_the_model_is(synthetic_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(synthetic_dir), "--out", str(run), "--val-interval", "1", *TINY_TRAIN]
    assert main(argv + ["--max-epochs", "2"]) == 0
    out = capsys.readouterr().out
    history = json.loads((run / "history.json").read_text())
    assert history["epochs"] == [1, 2] and history["val_epochs"] == [1, 2]
    assert (f"best val Dice {max(history['val_dice']):.4f} at epoch {history['best_metric_epoch']}; "
            f"best model: {run / 'best_metric_model.pth'}; checkpoint: {run / 'checkpoint.pt'}") in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["channels"] == [4, 8, 16] and saved["pixdim"] == [6.0, 6.0, 6.0] and saved["max_epochs"] == 2
    synthetic = CourseConfig.synthetic()                       # options not given keep the data set's defaults
    assert (saved["loss"], saved["learning_rate"], saved["profile"]) == (synthetic.loss, synthetic.learning_rate,
                                                                         "synthetic")
    assert main(argv + ["--max-epochs", "2"]) == 2            # an existing run is not overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--max-epochs", "3", "--resume"]) == 0
    assert json.loads((run / "history.json").read_text())["epochs"] == [1, 2, 3]


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, CourseConfig, dict]]:
    """Every call ``spleen-course train`` makes to ``spleen_helpers.engine.loop.train`` (nothing trains)."""
    import types

    import spleen_helpers.engine.loop as train_module

    calls: list[tuple[Path, CourseConfig, dict]] = []

    def fake_train(data_dir, run_dir, cfg, **kwargs):
        calls.append((Path(run_dir), cfg, kwargs))
        return types.SimpleNamespace(best_metric=0.5, best_metric_epoch=1, best_model_path=Path(run_dir) / "b",
                                     checkpoint_path=Path(run_dir) / "c")

    monkeypatch.setattr(train_module, "train", fake_train)
    return calls


@pytest.mark.parametrize("options, settings", [
    ([], {}),
    (["--augment"], {"augment": True}),
    (["--no-augment"], {"augment": False}),
    (["--loader", "thread"], {"loader": "thread"}),
    (["--loader", "standard", "--num-workers", "3"], {"loader": "standard", "num_workers": 3}),
    (["--amp", "--device", "cuda:0"], {"amp": True, "device": "cuda:0"}),
    (["--loss", "dice", "--learning-rate", "0.01"], {"loss": "dice", "learning_rate": 0.01}),
    (["--pixdim", "1", "2", "3", "--channels", "8", "16", "32", "--strides", "2", "2"],
     {"pixdim": (1.0, 2.0, 3.0), "channels": (8, 16, 32), "strides": (2, 2)}),
    (["--val-fraction", "0.25", "--no-clip", "--keep-largest-component"],
     {"val_fraction": 0.25, "clip": False, "keep_largest_component": True}),
])
def test_train_options_become_exactly_those_settings(options: list[str], settings: dict, synthetic_dir: Path,
                                                     tmp_path: Path, train_calls: list) -> None:
    assert main(["train", "--data-dir", str(synthetic_dir), "--out", str(tmp_path / "r"), *options]) == 0
    [(run_dir, cfg, kwargs)] = train_calls
    assert run_dir == tmp_path / "r"
    assert kwargs == {"resume": False, "overwrite": False, "progress": True, "keep_headers": False}
    assert cfg == CourseConfig.synthetic(**settings) and cfg.profile == "synthetic"


def test_train_keep_headers_reaches_train(synthetic_dir: Path, tmp_path: Path, train_calls: list) -> None:
    assert main(["train", "--data-dir", str(synthetic_dir), "--out", str(tmp_path / "r"), "--keep-headers"]) == 0
    [(_, _, kwargs)] = train_calls
    assert kwargs["keep_headers"] is True


def test_every_setting_has_a_train_option(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(CourseConfig):
        if "help" in f.metadata:
            assert f"--{f.name.replace('_', '-')}" in text, f.name


def test_train_refuses_amp_on_cpu_and_an_unknown_loader(synthetic_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(synthetic_dir), "--out", str(run), "--amp", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: amp (mixed precision) needs a CUDA device") and err.count("\n") == 1
    assert not run.exists()
    with pytest.raises(SystemExit) as info:
        main(["train", "--data-dir", str(synthetic_dir), "--out", str(run), "--loader", "processes"])
    assert info.value.code == 2 and "invalid choice: 'processes'" in capsys.readouterr().err


# ------------------------------------------------------------------------ run-course --fresh
def writer_notebook(path: Path) -> Path:
    """A course-like notebook whose ``parameters`` cell defines ``run_dir`` and ``name``, and
    which writes the file ``run_dir/name``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('run_dir = ""\nname = "a"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("from pathlib import Path\n(Path(run_dir) / name).write_text('x')")]
    nbformat.write(nb, path)
    return path


def test_run_course_fresh_refuses_a_folder_it_did_not_create(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    nb = writer_notebook(tmp_path / "01_writer.ipynb")
    mine = tmp_path / "my_run"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own notes")
    out = tmp_path / "course"
    assert main(["run-course", "--only", str(nb), "--output-dir", str(out), "--fresh",
                 "-p", "run_dir", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {mine}: --fresh") and "notes.txt" in err and err.count("\n") == 1
    assert (mine / "notes.txt").read_text() == "my own notes" and not out.exists()


@pytest.mark.slow
def test_run_course_fresh_empties_the_run_directory_it_created(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from spleen_helpers.tools.course import RUN_DIR_MARKER

    nb = writer_notebook(tmp_path / "01_writer.ipynb")
    out = tmp_path / "course"
    assert main(["run-course", "--only", str(nb), "--output-dir", str(out), "-p", "name", "first"]) == 0
    run = out / "run"
    assert sorted(p.name for p in run.iterdir()) == sorted([RUN_DIR_MARKER, "first"])
    assert main(["run-course", "--only", str(nb), "--output-dir", str(out), "--fresh", "-p", "name", "second"]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted([RUN_DIR_MARKER, "second"])
    capsys.readouterr()


def test_check_data_gives_every_case_its_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spleen_helpers.data.phantom import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "twin", num_cases=2, seed=0, lps_as_ras=True, num_test=0)
    assert main(["check-data", "--data-dir", str(tmp_path / "twin")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("spleen_1: RAS, (96, 96, 24), spleen ") and lines[0].endswith(
        "turned; the header looks turned 180° about the body's long axis (LPS written as RAS)")
    assert lines[-1].startswith("spleen side of 2 labelled cases: 2 turned")
