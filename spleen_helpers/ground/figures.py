"""Matplotlib figures that work the same in notebooks, scripts and headless runs.

Example:
    >>> fig = NotebookFigure(figsize=(2, 2))
    >>> _ = fig.subplots().plot([0, 1], [1, 0])
    >>> fig._repr_png_()[:4]
    b'\x89PNG'
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from matplotlib.figure import Figure

from .files import atomic_path

__all__ = ["NotebookFigure", "save_figure"]


class NotebookFigure(Figure):
    """A pyplot-free Figure that shows itself as PNG in Jupyter.

    Made without pyplot, nothing leaks between calls (no global figure list to close). But
    a plain ``Figure`` that pyplot never saw is shown as its text repr unless matplotlib's
    inline backend happens to be active already (it loads lazily, on the first pyplot
    figure); ``_repr_png_`` makes the figure display the same way in every front end.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
        return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write ``fig`` atomically; the format follows the file's suffix (``.png``, ``.pdf``, ``.svg``)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return path
