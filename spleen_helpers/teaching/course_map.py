"""The course's data path in one picture: DICOM series → NIfTI → transforms → network → mask → DICOM SEG.

Drawn by code, so the README's copy (``docs/img/data_path.png``) and notebook 01's are the same
picture: ``python -m spleen_helpers.teaching.course_map docs/img/data_path.png`` redraws it.

Example:
    >>> fig = plot_data_path()
    >>> [s.title for s in DATA_PATH][0], [s.title for s in DATA_PATH][-1]
    ('DICOM series', 'DICOM SEG')
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..ground.figures import NotebookFigure

__all__ = ["Stage", "DATA_PATH", "plot_data_path"]


@dataclass(frozen=True)
class Stage:
    """One step of the data path: what the data is, the tool that makes it, the notebook that shows it."""

    title: str
    detail: str
    tool: str
    notebook: str


DATA_PATH = (
    Stage("DICOM series", "one file per slice,\nfrom a PACS export", "pydicom", "01"),
    Stage("NIfTI volume", "one 3-D array\nand its affine", "dicom2nifti, nibabel", "01"),
    Stage("transforms", "HU window, crop,\nRAS, resample", "MONAI Compose", "02"),
    Stage("network", "3-D UNet, sliding\nwindow, softmax", "MONAI UNet", "03"),
    Stage("mask", "back on the CT's grid,\nscored, looked at", "Invertd, DiceMetric", "04"),
    Stage("DICOM SEG", "the mask as DICOM,\nfor a PACS viewer", "highdicom", "05"),
)

_COLOURS = {"01": "#dbe9f6", "02": "#e3f1dc", "03": "#fde8cf", "04": "#f6dde4", "05": "#e8e1f3"}


def plot_data_path(stages: tuple[Stage, ...] = DATA_PATH) -> NotebookFigure:
    """One row of boxes joined by arrows: each stage, the tool that makes it, and its notebook."""
    fig = NotebookFigure(figsize=(2.2 * len(stages), 2.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, len(stages))
    ax.set_ylim(0, 1)
    ax.axis("off")
    for i, stage in enumerate(stages):
        box = FancyBboxPatch((i + 0.08, 0.22), 0.84, 0.62, boxstyle="round,pad=0.02",
                             facecolor=_COLOURS.get(stage.notebook, "#eeeeee"), edgecolor="#555555")
        ax.add_patch(box)
        ax.text(i + 0.5, 0.74, stage.title, ha="center", va="center", fontsize=11, weight="bold")
        ax.text(i + 0.5, 0.52, stage.detail, ha="center", va="center", fontsize=8.5)
        ax.text(i + 0.5, 0.31, stage.tool, ha="center", va="center", fontsize=8, style="italic", color="#333333")
        ax.text(i + 0.5, 0.1, f"notebook {stage.notebook}", ha="center", va="center", fontsize=8, color="#555555")
        if i:
            ax.add_patch(FancyArrowPatch((i - 0.06, 0.53), (i + 0.06, 0.53), arrowstyle="-|>",
                                         mutation_scale=14, color="#333333"))
    return fig


if __name__ == "__main__":  # python -m spleen_helpers.teaching.course_map docs/img/data_path.png
    import sys

    from ..ground.figures import save_figure

    print(save_figure(plot_data_path(), sys.argv[1] if len(sys.argv) > 1 else "data_path.png", dpi=110))
