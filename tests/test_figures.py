"""Figures: shown as PNG in Jupyter without pyplot, saved atomically."""

from __future__ import annotations

from pathlib import Path

from spleen_helpers.ground.figures import NotebookFigure, save_figure


def _figure() -> NotebookFigure:
    fig = NotebookFigure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_a_notebook_figure_shows_itself_as_png() -> None:
    assert _figure()._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_figure_writes_a_png_atomically(tmp_path: Path) -> None:
    out = save_figure(_figure(), tmp_path / "figs" / "steps.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["steps.png"]


def test_save_figure_follows_the_suffix(tmp_path: Path) -> None:
    out = save_figure(_figure(), tmp_path / "steps.svg")
    assert out.read_text().lstrip().startswith("<?xml")
