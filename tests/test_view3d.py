"""The 3-D view: the surface figure in millimetres, the NiiVue widget fed the CT and its masks,
and the static picture it keeps for saved notebooks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spleen_helpers.ground.errors import DataError
from spleen_helpers.teaching.view3d import View3D, surface_figure, view_3d
from tests.support import viewer_volumes


@pytest.fixture(scope="module")
def volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return viewer_volumes((40, 30, 16))


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def test_surface_figure_draws_each_mask_in_millimetres(volumes) -> None:
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    _, label, pred = volumes
    fig = surface_figure(label, pred, spacing=(2.0, 1.0, 3.0))
    ax = fig.axes[0]
    assert ax.name == "3d" and fig._repr_png_()[:4] == b"\x89PNG"
    surfaces = [c for c in ax.collections if isinstance(c, Poly3DCollection)]
    assert len(surfaces) == 2
    # axes centred on the label's surface, in mm: its voxels' extent times the spacing
    only = surface_figure(label, spacing=(2.0, 1.0, 3.0)).axes[0]
    present = [np.flatnonzero(label.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
    lo = np.array([p[0] for p in present]) + 1 - 0.5      # marching_cubes runs on the padded mask
    hi = np.array([p[-1] for p in present]) + 1 + 0.5
    spacing = np.array([2.0, 1.0, 3.0])
    limits = np.array([only.get_xlim(), only.get_ylim(), only.get_zlim()])
    assert np.allclose(limits.mean(1), (lo + hi) / 2 * spacing, atol=0.1)
    assert np.allclose(limits[:, 1] - limits[:, 0], ((hi - lo) * spacing).max(), atol=0.2)
    empty = surface_figure(prediction=np.zeros_like(label))
    assert "prediction: empty" in empty.axes[0].get_title()
    with pytest.raises(DataError, match="needs a label or a prediction"):
        surface_figure()


def test_view_3d_sends_the_ct_and_masks_to_niivue_and_keeps_a_picture(volumes, tmp_path: Path) -> None:
    import gzip

    from IPython.utils.capture import capture_output
    from ipyniivue import NiiVue

    image, label, pred = volumes
    affine = np.diag([2.0, 2.0, 5.0, 1.0])
    view = view_3d(image, label, pred, affine=affine, window=(-100.0, 200.0))
    assert isinstance(view, View3D) and isinstance(view.widget, NiiVue)
    assert "spleen-3d-view" in view.widget._dom_classes
    ct, lab, out = view.widget.volumes
    assert [v.colormap for v in view.widget.volumes] == ["gray", "blue", "gold"]   # colour-blind-safe
    assert (ct.cal_min, ct.cal_max) == (-100.0, 200.0) and lab.cal_min == 0.5
    sent = nib.Nifti1Image.from_bytes(gzip.decompress(out.data))
    assert np.array_equal(np.asarray(sent.dataobj), pred) and np.array_equal(sent.affine, affine)
    assert np.allclose(np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(ct.data)).dataobj), image)

    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.instance()   # display() goes to a shell's display publisher, as in Jupyter
    with capture_output() as shown:
        view._ipython_display_()
    kinds = [set(o.data) for o in shown.outputs]
    assert "image/png" in kinds[0] and "application/vnd.jupyter.widget-view+json" in kinds[1]

    lps = np.diag([-2.0, -2.0, 5.0, 1.0])
    img = _save(image.astype(np.int16) - 1000, lps, tmp_path / "ct.nii.gz")
    msk = _save(label, lps, tmp_path / "mask.nii.gz")
    from_files = view_3d(img, prediction=msk)
    assert [str(v.path) for v in from_files.widget.volumes] == [str(img), str(msk)]
    assert view_3d(img).figure is None
    with pytest.raises(DataError, match="shapes differ"):
        view_3d(image, label[:, :, :10])
