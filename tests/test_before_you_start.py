"""Each notebook says, right after its ``parameters`` cell, what a learner needs before starting:
prerequisites (Python, NumPy, PyTorch, one link each), reading time, and the running time on
the phantom -- the latest per-notebook measurement of BENCHMARKS.md §1, so the stated time
cannot go stale without this test going red. Real-data times are marked as estimates.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STATED = re.compile(r"\*\*Running time on the phantom:\*\*\s*([\d.]+) s on 2 CPU cores")


def measured_seconds(benchmarks: str) -> dict[str, str]:
    """The latest 2-CPU wall time per notebook in BENCHMARKS.md §1 (the course benchmark's table)."""
    table = benchmarks.split("<!-- bench:course:begin -->")[1].split("<!-- bench:course:end -->")[0]
    latest: dict[str, tuple[str, str]] = {}
    for line in table.splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cols) > 7 and cols[0].endswith(".ipynb") and cols[7] == "2":
            if cols[0] not in latest or cols[5] > latest[cols[0]][1]:
                latest[cols[0]] = (cols[1], cols[5])
    return {name: seconds for name, (seconds, _) in latest.items()}


def before_you_start(path: Path) -> str:
    cells = nbformat.read(path, as_version=4).cells
    params = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    cell = cells[params + 1]
    assert cell.cell_type == "markdown" and cell.source.startswith("**Before you start**"), (
        f"{path.name}: the cell after the parameters cell must be '**Before you start**'")
    return cell.source


def test_measured_seconds_reads_the_latest_row() -> None:
    row = "| {n} | {s} | passed |  |  | {d} | machine | 2 | 2.13 | 1.6 | cmd |"
    text = "\n".join(["<!-- bench:course:begin -->", row.format(n="01_a.ipynb", s="9.0", d="2026-01-01 10:00 UTC"),
                      row.format(n="01_a.ipynb", s="12.5", d="2026-02-01 10:00 UTC"), "<!-- bench:course:end -->"])
    assert measured_seconds(text) == {"01_a.ipynb": "12.5"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_opening_states_prerequisites_and_the_measured_phantom_time(path: Path) -> None:
    text = before_you_start(path)
    for link in ("docs.python.org", "numpy.org", "pytorch.org"):
        assert f"({'https://'}{link}" in text, f"{path.name}: no prerequisite link to {link}"
    assert re.search(r"\*\*Reading time:\*\* about \d+ minutes", text), f"{path.name}: no reading time"
    stated = STATED.search(text)
    assert stated, f"{path.name}: no '**Running time on the phantom:** N s on 2 CPU cores'"
    measured = measured_seconds((ROOT / "BENCHMARKS.md").read_text(encoding="utf-8"))
    assert stated.group(1) == measured[path.name], (
        f"{path.name}: states {stated.group(1)} s on the phantom, BENCHMARKS.md §1 measured {measured[path.name]} s "
        "last: copy the measured figure")
    assert "BENCHMARKS.md §1" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_real_data_times_are_marked_as_estimates(path: Path) -> None:
    real = before_you_start(path).split("**On real data:**", 1)[1].split("\n- ", 1)[0]
    if re.search(r"\d+\s*(s|seconds?|minutes?|hours?)\b", real):
        assert "estimate" in real and "BENCHMARKS.md §6" in real, f"{path.name}: a real-data time not marked as an estimate"
