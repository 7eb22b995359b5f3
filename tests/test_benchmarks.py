"""The benchmarks' harness: the quick smoke writes well-formed rows, the report keeps and
replaces rows correctly, the GPU recipe skips cleanly without CUDA. No figure is asserted:
benchmarks are measurements, not timed tests (a time that rounds to 0.0 is a well-formed row)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO_ROOT))  # the benchmarks live in the checkout, not in the package

from benchmarks import MODULES, NAMES  # noqa: E402
from benchmarks.common import CONTEXT_COLUMNS, Result, machine_info  # noqa: E402
from benchmarks.course import notebook_times  # noqa: E402
from benchmarks.report import NOT_MEASURED, parse_table, read_section, template, write_results  # noqa: E402

NUMBER = re.compile(r"^-?\d+(\.\d+)?")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """``python -m benchmarks --quick`` once, into a scratch BENCHMARKS.md (CUDA hidden)."""
    out = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--output", str(out)],
                          cwd=REPO_ROOT, env=_env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True,
                          timeout=600)
    return proc, out


@pytest.mark.slow
def test_quick_smoke_writes_a_section_per_benchmark(quick_run) -> None:
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for name in ("course", "efficiency", "inference", "memory", "viewer", "phantom", "ddp"):
        lines = read_section(text, name)
        assert lines is not None, name
        header, rows = parse_table(lines)
        assert header[-len(CONTEXT_COLUMNS):] == CONTEXT_COLUMNS
        assert rows, f"{name}: no rows"
        assert any(line.startswith("**Latest run:**") for line in lines)
    # without CUDA the GPU recipe measures nothing and its section says so
    assert read_section(text, "gpu") == [NOT_MEASURED]
    assert "gpu: skipped: no CUDA" in proc.stdout


@pytest.mark.slow
def test_quick_rows_state_machine_versions_command_and_numbers(quick_run) -> None:
    proc, out = quick_run
    text = out.read_text()
    info = machine_info()
    numeric = {"course": ["seconds"], "efficiency": ["samples/s", "bare samples/s", "ratio", "setup s"],
               "inference": ["CT peak RSS MiB", "CT mask voxels", "time ratio course/this"],
               "memory": ["peak RSS MiB", "RSS after imports MiB", "seconds"],
               "viewer": ["ms per step (median)", "slowest ms"],
               "phantom": ["best val Dice", "val Dice (image space)", "test Dice (image space)",
                           "largest drop", "training s"],
               "ddp": ["s/epoch (runs)"]}
    for name, columns in numeric.items():
        _, rows = parse_table(read_section(text, name))
        for row in rows:
            assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", row["date"])
            assert row["machine"] == info["machine"] and row["CPUs"] == info["CPUs"]
            assert row["torch"] == info["torch"] and row["MONAI"] == info["MONAI"]
            assert row["command"].endswith(f"--quick --output {out}")
            for col in columns:
                assert NUMBER.match(row[col]), f"{name}/{col}: {row[col]!r}"
                assert float(NUMBER.match(row[col]).group()) >= 0
            for target in ("target", "target Dice", "target smooth"):
                assert "met" not in row.get(target, "").replace("n/a (quick smoke)", "")
    # every loader the smoke measured gets a ratio, and the course default is among them
    _, rows = parse_table(read_section(text, "efficiency"))
    assert any(r["loader"].startswith("course default:") for r in rows) and len(rows) >= 2
    _, rows = parse_table(read_section(text, "inference"))
    assert [r["variant"] for r in rows] == ["bundle", "course", "bundle pipeline", "course, Invertd path"]
    assert all(NUMBER.match(r["synthetic Dice"]) for r in rows if r["variant"] != "bundle pipeline")
    for row in rows:   # "seconds (runs)": a time that rounds to 0.0 on a fast machine is fine
        assert re.match(r"^\d+(\.\d+)? \(\d+(\.\d+)?(, \d+(\.\d+)?)*\)$", row["CT seconds (runs)"]), \
            row["CT seconds (runs)"]
    _, rows = parse_table(read_section(text, "memory"))
    assert all(float(r["peak RSS MiB"]) >= float(r["RSS after imports MiB"]) > 0 for r in rows)


def _result(value: str, variant: str = "a") -> Result:
    r = Result(columns=["variant", "seconds"], key_columns=("variant",))
    r.add(variant=variant, seconds=value)
    r.notes.append(f"note {value}")
    return r


def _context(machine: str = "m1", command: str = "python -m benchmarks") -> dict[str, str]:
    return {"date": "2030-01-01 00:00 UTC", "machine": machine, "CPUs": "2", "torch": "t", "MONAI": "x",
            "command": command}


def test_report_replaces_rows_of_the_same_machine_and_keeps_others(tmp_path: Path) -> None:
    mod = MODULES[1]
    out = tmp_path / "B.md"
    write_results(out, {mod.NAME: (mod, _result("1.0"))}, _context(), MODULES)
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "## How to reproduce" in text
    for other in MODULES:  # every other section exists and is marked unmeasured
        if other is not mod:
            assert read_section(text, other.NAME) == [NOT_MEASURED]
    # hand-written prose outside the markers survives a rewrite
    out.write_text(text.replace("## How to reproduce", "## How to reproduce\n\nHand-written line."))
    write_results(out, {mod.NAME: (mod, _result("2.0"))}, _context(), MODULES)       # same machine: replaced
    write_results(out, {mod.NAME: (mod, _result("3.0"))}, _context("m2"), MODULES)   # other machine: appended
    write_results(out, {mod.NAME: (mod, _result("4.0"))}, _context(command="python -m benchmarks --quick"),
                  MODULES)                                                               # quick: kept apart
    text = out.read_text()
    assert "Hand-written line." in text
    _, rows = parse_table(read_section(text, mod.NAME))
    assert [(r["machine"], r["seconds"]) for r in rows] == [("m1", "2.0"), ("m2", "3.0"), ("m1", "4.0")]
    assert "- note 4.0" in text and "- note 2.0" not in text  # notes describe the latest run only


def test_template_lists_every_benchmark_once() -> None:
    text = template(MODULES)
    for name in NAMES:
        assert text.count(f"<!-- bench:{name}:begin -->") == 1
    assert [m.NAME for m in MODULES] == NAMES == ["course", "efficiency", "inference", "memory", "gpu", "viewer",
                                                  "phantom", "ddp"]


def test_committed_benchmarks_md_has_every_section() -> None:
    text = (REPO_ROOT / "BENCHMARKS.md").read_text()
    for name in NAMES:
        assert read_section(text, name) is not None, name


def test_notebook_times_reads_pytest_junit_xml(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite name="pytest">'
                   '<testcase classname="" name="notebooks/01_a.ipynb" time="12.5"/>'
                   '<testcase classname="" name="notebooks/02_b.ipynb" time="3.0"><failure message="x"/></testcase>'
                   '</testsuite></testsuites>')
    assert notebook_times(xml) == [("01_a.ipynb", 12.5, "passed"), ("02_b.ipynb", 3.0, "failed")]


def test_gpu_recipe_skips_cleanly_without_cuda() -> None:
    for cmd in ([sys.executable, "-m", "benchmarks.gpu_recipe"],
                [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_recipe.py"), "--output", "unused.md"]):
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=_env(CUDA_VISIBLE_DEVICES=""), capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith("skipped: no CUDA")
        assert not (REPO_ROOT / "unused.md").exists()


def test_gpu_recipe_caches_up_to_the_first_random_transform() -> None:
    import torch
    from monai.transforms import Randomizable, ToDeviced

    from benchmarks.gpu_recipe import recipe_transforms
    from spleen_helpers.ground.settings import CourseConfig

    train_tf, val_tf = recipe_transforms(CourseConfig.synthetic(), torch.device("cpu"))
    names = [type(t).__name__ for t in train_tf.transforms]
    first_random = next(i for i, t in enumerate(train_tf.transforms) if isinstance(t, Randomizable))
    assert isinstance(train_tf.transforms[first_random - 1], ToDeviced)  # cached part ends on the device
    assert names.count("ToDeviced") == 1
    assert isinstance(val_tf.transforms[-1], ToDeviced)


def test_an_unknown_benchmark_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.runner import main

    assert main(["--only", "no-such-benchmark"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no-such-benchmark" in err and err.count("\n") == 0


def test_the_entry_point_runs_the_quick_course_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.runner import main

    out = tmp_path / "B.md"
    assert main(["--quick", "--only", "course", "--output", str(out)]) == 0
    _, rows = parse_table(read_section(out.read_text(), "course"))
    assert rows[-1]["notebook"] == "total (pytest wall time)" and rows[-1]["status"] == "passed"
    assert rows[-1]["command"] == f"python -m benchmarks --quick --only course --output {out}"
    assert read_section(out.read_text(), "efficiency") == [NOT_MEASURED]
