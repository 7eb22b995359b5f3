"""The 3-D view of a CT and its masks: a NiiVue widget and a static picture of the mask surfaces.

:func:`view_3d` shows a CT with its masks in 3-D: an ipyniivue (NiiVue, WebGL) widget with
the three planes and a volume rendering, the masks overlaid, plus a static picture of the
mask surfaces (:func:`surface_figure`: ``skimage.measure.marching_cubes`` drawn with
matplotlib) that stays in saved notebooks and their HTML, where no widget runs. Inputs are
read as the slice viewer reads them (:func:`spleen_helpers.teaching.viewers.load_volume`),
in its colours and its radiological convention.

Example:
    >>> import numpy as np
    >>> ball = (np.indices((16, 16, 16)) - 8) ** 2
    >>> surface_figure(label=(ball.sum(0) < 25).astype(np.uint8)).axes[0].name
    '3d'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..data.nifti import open_nifti
from ..ground.errors import DataError
from ..ground.figures import NotebookFigure
from .viewers import (
    _LABEL_COLOUR,
    _PREDICTION_COLOUR,
    CT_WINDOW,
    _load_all,
    load_volume,
)

__all__ = ["surface_figure", "View3D", "view_3d"]


_NIIVUE_COLOURMAPS = {"label": "blue", "prediction": "gold"}   # NiiVue's nearest built-in maps


# ------------------------------------------------------------------------------------ 3-D
def surface_figure(label: Any = None, prediction: Any = None, spacing: Sequence[float] | None = None,
                   title: str | None = None, max_faces: int = 60_000, size: float = 4.5) -> Figure:
    """The surfaces of ``label`` (blue) and ``prediction`` (orange) in 3-D, as a static figure.

    Each mask's surface is found with ``skimage.measure.marching_cubes`` in millimetres (the
    NIfTI's voxel size, or ``spacing``; paths are shown in RAS) and drawn with matplotlib's
    ``Poly3DCollection``; large masks are meshed on a coarser step so that at most about
    ``max_faces`` triangles are drawn. An empty mask is named in the legend instead of drawn.

    >>> import numpy as np
    >>> ball = (np.indices((20, 20, 20)) - 10) ** 2
    >>> fig = surface_figure(prediction=(ball.sum(0) < 36).astype(np.uint8), spacing=(1, 1, 2))
    >>> fig.axes[0].name, len(fig.axes[0].collections)
    ('3d', 1)
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    masks = {name: load_volume(value, name, mask=True, spacing=spacing)
             for name, value in (("label", label), ("prediction", prediction)) if value is not None}
    if not masks:
        raise DataError(None, "surface_figure needs a label or a prediction")
    fig = NotebookFigure(figsize=(size, size), dpi=80)
    ax = fig.add_subplot(projection="3d")
    colours = {"label": _LABEL_COLOUR, "prediction": _PREDICTION_COLOUR}
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    notes = []
    for name, vol in masks.items():
        binary = np.pad(np.asarray(vol.data) > 0, 1).astype(np.float32)
        if not binary.any():
            notes.append(f"{name}: empty")
            continue
        step = 1
        while binary.sum() ** (2 / 3) * 8 / step ** 2 > max_faces and step < 8:
            step += 1
        verts, faces, _, _ = marching_cubes(binary, level=0.5, spacing=vol.spacing, step_size=step)
        ax.add_collection3d(Poly3DCollection(verts[faces], facecolor=colours[name], edgecolor="none",
                                             alpha=0.55 if name == "label" else 0.8))
        lo, hi = np.minimum(lo, verts.min(0)), np.maximum(hi, verts.max(0))
        notes.append(f"{name}: {len(faces)} faces")
    if np.isfinite(lo).all():
        centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 or 1.0
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            setter(c - half, c + half)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x (mm, R)")
    ax.set_ylabel("y (mm, A)")
    ax.set_zlabel("z (mm, S)")
    ax.view_init(elev=20, azim=-60)
    ax.set_title(title or "surfaces: " + ", ".join(notes), fontsize=9)
    return fig


def _niivue_volume(value: Any, name: str, affine: Any, spacing: Sequence[float] | None,
                   **style: Any) -> Any:
    """An ipyniivue ``Volume`` from a NIfTI path (sent as it is) or an array (sent as NIfTI bytes)."""
    import gzip

    import nibabel as nib
    from ipyniivue import Volume

    if isinstance(value, (str, os.PathLike)):
        open_nifti(Path(value), name)
        return Volume(path=str(value), **style)
    vol = load_volume(value, name, mask=name != "image", spacing=spacing)
    matrix = np.asarray(affine, float) if affine is not None else np.diag([*vol.spacing, 1.0])
    dtype = np.uint8 if name != "image" else np.float32
    data = gzip.compress(nib.Nifti1Image(np.asarray(vol.data, dtype=dtype), matrix).to_bytes(), 1)
    return Volume(data=data, name=f"{name}.nii.gz", **style)


class View3D:
    """What :func:`view_3d` returns: ``widget`` (an ipyniivue ``NiiVue``, CSS class
    ``spleen-3d-view``) and ``figure`` (the static surface picture). Displaying the object shows
    the picture, then the widget: saved notebooks and their HTML keep the picture.
    """

    def __init__(self, widget: Any, figure: Figure | None) -> None:
        self.widget, self.figure = widget, figure

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.figure is not None:
            display(self.figure)
        display(self.widget)


def view_3d(image: Any, label: Any = None, prediction: Any = None, *, affine: Any = None,
            spacing: Sequence[float] | None = None, window: tuple[float, float] = CT_WINDOW,
            height: int = 420, opacity: float = 0.6) -> View3D:
    """A 3-D view of a CT with its masks: NiiVue (ipyniivue) plus a static surface picture.

    ``image``, ``label`` and ``prediction`` are NIfTI paths (shown in their own geometry) or
    arrays on one grid (``affine`` or ``spacing`` place them; default 1 mm voxels). The
    widget shows the axial, coronal and sagittal planes and a volume rendering (drag to
    rotate; a click moves the crosshair) with the label blue and the prediction orange, the
    CT in ``window`` (HU), in the radiological convention of the slice viewer (the patient's
    right on the left). It needs a browser with WebGL 2 (JupyterLab 4, Colab).

    >>> v = view_3d("ct.nii.gz", prediction="mask.nii.gz")   # doctest: +SKIP
    >>> v                                                    # doctest: +SKIP
    """
    from ipyniivue import NiiVue, ShowRender, SliceType

    _load_all(image, label, prediction, spacing)  # same grid, readable, 3-D: one-line errors
    widget = NiiVue(height=height, back_color=(0.0, 0.0, 0.0, 1.0), is_colorbar=False,
                    multiplanar_show_render=ShowRender.ALWAYS, slice_type=SliceType.MULTIPLANAR,
                    show_3d_crosshair=False, is_radiological_convention=True,
                    loading_text="loading the CT ...")
    widget.add_class("spleen-3d-view")
    volumes = [_niivue_volume(image, "image", affine, spacing, colormap="gray",
                              cal_min=float(window[0]), cal_max=float(window[1]))]
    for value, name in ((label, "label"), (prediction, "prediction")):
        if value is not None:
            volumes.append(_niivue_volume(value, name, affine, spacing, colormap=_NIIVUE_COLOURMAPS[name],
                                          opacity=opacity, cal_min=0.5, cal_max=1.0))
    widget.load_volumes(volumes)
    figure = None if label is None and prediction is None else surface_figure(
        label, prediction, spacing=spacing,
        title="static picture (kept in saved notebooks): label blue, prediction orange")
    return View3D(widget, figure)
