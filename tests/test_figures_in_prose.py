"""No measured figure typed into a notebook's prose or code comments (CONTRIBUTING: figures
come from a measurement; a notebook prints what it measured).

A sentence of a markdown cell, or a code comment, that states a Dice/IoU/HD95 figure (or a
figure next to "measured" or "scores") is a finding unless its cell cites the benchmark it
comes from ("BENCHMARKS.md §N") or the sentence names its source as the bundle's model card
(``metadata.json``). Thresholds ("Dice ≥ 0.999", "within 0.002", "a margin of 0.05") and
worked examples ("e.g.", "a Dice of 0.9 is an IoU of 0.82") are fine. A typed-in figure goes
stale the day the code changes; a printed one cannot.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))

SENTENCE_BREAK = re.compile(r"(?<=[.!?;])\s+(?=[A-Z*`(_\-])|\n\s*\n|\n- ")
FIGURE = re.compile(r"(?<![\w.])0\.\d{2,}\b")
ABOUT_A_SCORE = re.compile(r"\b(Dice|IoU|HD95|DSC|[Mm]easured|scores?d?)\b")
BOUND_BEFORE = re.compile(r"(>=|≥|<=|≤|<|>|at least|at most|above|below|within|tolerance|margin( of)?"
                          r"|threshold( of)?)\s*$", re.I)
EXAMPLE_OR_SOURCE = re.compile(r"\b(for example|e\.g\.|say|suppose|so a|is an IoU of)\b|metadata\.json|model card",
                               re.I)
CITES_BENCHMARKS = re.compile(r"BENCHMARKS\.md\s*(§|section\s*)\d")


def prose(cell: nbformat.NotebookNode) -> str:
    """What a reader reads as prose: a markdown cell, or a code cell's comments (not ``#@title``)."""
    if cell.cell_type != "code":
        return cell.source
    return "\n".join(line.split("#", 1)[1] for line in cell.source.splitlines()
                     if "#" in line and not line.strip().startswith("#@"))


def typed_in_figures(text: str) -> list[str]:
    """The figures of ``text`` that look measured and typed in (empty when the text cites BENCHMARKS.md §N)."""
    if CITES_BENCHMARKS.search(text):
        return []
    found = []
    for sentence in SENTENCE_BREAK.split(text):
        if not ABOUT_A_SCORE.search(sentence) or EXAMPLE_OR_SOURCE.search(sentence):
            continue
        found += [m.group(0) for m in FIGURE.finditer(sentence) if not BOUND_BEFORE.search(sentence[:m.start()])]
    return found


@pytest.mark.parametrize("text, figures", [
    ("Measured with the phantom model: a **Dice of 0.002** on the whole CT.", ["0.002"]),
    ("Over seeds 0 to 2 the full run scores 0.964 to 0.968.", ["0.964", "0.968"]),
    ("# Measured after 8 epochs, Dice vs Dice + CE: seed 0 0.42 vs 0.53", ["0.42", "0.53"]),
    ("The masks agree with Dice ≥ 0.999; HD95 within 0.002 mm of the package's.", []),
    ("The trained network must beat the untrained one by a margin of 0.05.", []),
    ("For example, a Dice of 0.9 is an IoU of 0.82.", []),
    ("Its model card states a mean Dice of 0.96 on its validation split.", []),
    ("The full run's validation Dice is 0.965 (BENCHMARKS.md §8).", []),
    ("The window spans 0.25 of the image.", []),
])
def test_the_rule(text: str, figures: list[str]) -> None:
    assert typed_in_figures(text) == figures


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_measured_figure_is_typed_into_the_prose(path: Path) -> None:
    cells = nbformat.read(path, as_version=4).cells
    findings = [f"cell {i}: {', '.join(found)}" for i, cell in enumerate(cells)
                if (found := typed_in_figures(prose(cell)))]
    assert not findings, (f"{path.name}: measured figures typed into the prose ({'; '.join(findings)}): print "
                          "them from the run, or cite the BENCHMARKS.md section they come from")
