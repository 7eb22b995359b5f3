"""The slice viewer driven headless (slider, axis, overlay, opacity), its inputs and errors,
and the static slice figures (the 3-D view: test_view3d.py)."""

from __future__ import annotations

import io
from pathlib import Path

import ipywidgets as widgets
import nibabel as nib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from spleen_helpers.ground.errors import DataError
from spleen_helpers.teaching.viewers import CT_WINDOW, SliceViewer, plot_slices, slice_viewer
from tests.support import viewer_volumes

SHAPE = (40, 30, 16)


@pytest.fixture(scope="module")
def volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return viewer_volumes(SHAPE)


def drawn_image(viewer: SliceViewer) -> np.ndarray:
    """The pixels of the image panel in the PNG the viewer shows, without the title above it
    (which names the slice): in the first of the panels, the rows and columns that the slice
    fills (the title's text covers a small part of its row, the white margins none)."""
    png = np.asarray(Image.open(io.BytesIO(viewer.image.value)).convert("RGB"))
    first = png[:, : png.shape[1] // sum(v is not None for v in viewer.current_slice_data().values())]
    drawn = (first < 250).any(axis=2)
    rows, cols = np.flatnonzero(drawn.mean(axis=1) > 0.5), np.flatnonzero(drawn.mean(axis=0) > 0.5)
    return first[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_moving_the_slider_shows_that_slice(volumes) -> None:
    image, label, pred = volumes
    viewer = slice_viewer(image, label, pred)
    assert viewer.slider.description == "slice" and viewer.slider.max == SHAPE[2] - 1
    start = viewer.slider.value
    assert start == int(np.argmax(label.sum(axis=(0, 1))))  # busiest label slice
    assert viewer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    before = drawn_image(viewer)
    assert before.size > 100 * 100 * 3 and before.std() > 10      # a picture, not a blank panel
    viewer.slider.value = 3
    data = viewer.current_slice_data()
    assert np.array_equal(data["image"], image[:, :, 3])
    assert np.array_equal(data["label"], label[:, :, 3])
    assert np.array_equal(data["prediction"], pred[:, :, 3])
    after = drawn_image(viewer)
    assert after.shape == before.shape
    changed = float((np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 8).mean())
    assert changed > 0.05, f"only {changed:.1%} of the image panel's pixels changed"
    shown = viewer.image.value
    viewer.slider.value = 3          # same value: no change event, same picture
    assert viewer.image.value == shown
    viewer.slider.value = start      # back: the first picture again, pixel for pixel
    assert np.array_equal(drawn_image(viewer), before)


def test_switching_the_axis_changes_the_slider_range_and_clips_it(volumes) -> None:
    image, label, pred = volumes
    viewer = slice_viewer(image, label, pred, axis=0, index=35)
    assert viewer.slider.max == SHAPE[0] - 1 and viewer.slider.value == 35
    before = drawn_image(viewer)
    viewer.axis.value = 2                                     # axial: 16 slices
    assert viewer.slider.max == SHAPE[2] - 1 and viewer.slider.value == SHAPE[2] - 1
    assert np.array_equal(viewer.current_slice_data()["image"], image[:, :, SHAPE[2] - 1])
    assert drawn_image(viewer).shape != before.shape          # a 40 x 30 plane instead of 30 x 16
    viewer.axis.value = 1                                     # coronal: range grows, value kept
    assert viewer.slider.max == SHAPE[1] - 1 and viewer.slider.value == SHAPE[2] - 1
    assert viewer.current_slice_data()["image"].shape == (SHAPE[0], SHAPE[2])
    viewer.slider.value = SHAPE[1] - 1
    assert np.array_equal(viewer.current_slice_data()["label"], label[:, SHAPE[1] - 1, :])


def test_overlay_and_opacity_redraw(volumes) -> None:
    image, label, pred = volumes
    viewer = slice_viewer(image, label, pred)
    pngs = [viewer.image.value]
    viewer.opacity.value = 0.9
    pngs.append(viewer.image.value)
    viewer.overlay.value = False
    pngs.append(viewer.image.value)
    assert len(set(pngs)) == 3
    assert isinstance(viewer.overlay, widgets.Checkbox) and isinstance(viewer.opacity, widgets.FloatSlider)


def test_widget_structure_classes_and_display(volumes) -> None:
    image, label, _ = volumes
    viewer = slice_viewer(image, label)
    assert isinstance(viewer, SliceViewer) and isinstance(viewer.widget, widgets.VBox)
    assert "spleen-slice-viewer" in viewer.widget._dom_classes
    assert "spleen-slice-image" in viewer.image._dom_classes
    assert isinstance(viewer.image, widgets.Image) and viewer.image.format == "png"
    assert [o[0] for o in viewer.axis.options] == ["sagittal", "coronal", "axial"]

    def walk(w):
        yield w
        for child in getattr(w, "children", ()):
            yield from walk(child)

    sliders = [w for w in walk(viewer.widget) if isinstance(w, widgets.IntSlider)]
    assert [s.description for s in sliders] == ["slice"]
    assert viewer.image in list(walk(viewer.widget))
    bundle = viewer._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == viewer.widget.model_id
    assert viewer.current_slice_data()["prediction"] is None


def _panels(png: bytes, count: int) -> list[np.ndarray]:
    """The picture's panels (RGB arrays), split at the white columns between them."""
    import io

    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    width = picture.shape[1] // count
    return [picture[:, n * width:(n + 1) * width] for n in range(count)]


def test_the_picture_is_radiological_with_colour_blind_safe_overlays() -> None:
    """Slices as CT is read (patient's right on the left, anterior up); label blue and
    prediction orange (Okabe-Ito), the label's outline over the prediction; opacity blends."""
    image = np.zeros(SHAPE, np.float32)
    image[30:40, 20:30, :] = 1.0                        # high x (patient's right), high y (anterior)
    label = np.zeros(SHAPE, np.uint8)
    label[5:25, 5:20, :] = 1
    pred = np.zeros(SHAPE, np.uint8)
    pred[10:25, 5:20, :] = 1
    viewer = slice_viewer(image, label, pred, window=(0.0, 2.0), axis=2, index=8)
    img_panel, lab_panel, pred_panel = _panels(viewer.image.value, 3)
    black = np.all(img_panel == 0, axis=2)                       # the slice's background
    rows_in, cols_in = np.flatnonzero(black.mean(1) > 0.5), np.flatnonzero(black.mean(0) > 0.5)
    top, left = rows_in.min(), cols_in.min()                     # (not the black title text)
    height, width = rows_in.max() + 1 - top, cols_in.max() + 1 - left
    slice_px = img_panel[top:top + height, left:left + width]
    rows, cols = np.nonzero(np.all(slice_px == 127, axis=2))    # the block, mid-grey in this window
    assert len(rows) > 100
    assert rows.max() < height / 2 and cols.max() < width / 2    # top left
    colours = {tuple(int(c) for c in px) for px in lab_panel.reshape(-1, 3)}
    blue = [c for c in colours if c[2] > c[0] + 40]
    assert blue and not [c for c in colours if c[0] > c[2] + 40]   # the label panel: blue, no orange
    orange = np.argwhere((pred_panel[:, :, 0] > pred_panel[:, :, 2] + 40).astype(bool))
    assert len(orange) > 100                             # the prediction: orange ...
    outline = np.argwhere(np.all(pred_panel == (0, 114, 178), axis=2))
    assert len(outline) > 20                             # ... with the label's outline in pure blue
    viewer.opacity.value = 1.0
    full = _panels(viewer.image.value, 3)[1]
    assert np.any(np.all(full == (0, 114, 178), axis=2))  # opacity 1: the label colour itself
    viewer.overlay.value = False
    plain = _panels(viewer.image.value, 3)[2]
    assert set(np.unique(plain)) <= {0, 255} | set(range(0, 256)) and not (
        plain[:, :, 0] > plain[:, :, 2] + 40).any()      # masks in black and white, no colour


def test_tensors_with_channels_and_logits_are_accepted(volumes) -> None:
    image, label, _ = volumes
    logits = torch.from_numpy(np.stack([1 - label, label]).astype(np.float32))   # (2, X, Y, Z)
    viewer = slice_viewer(torch.from_numpy(image)[None], torch.from_numpy(label)[None, None], logits)
    data = viewer.current_slice_data()
    assert np.array_equal(data["prediction"], data["label"])
    assert np.array_equal(data["image"], image[:, :, viewer.slider.value])


def test_mismatched_shapes_are_named(volumes) -> None:
    image, label, _ = volumes
    with pytest.raises(DataError, match=r"shapes differ: image \(40, 30, 16\), label \(40, 30, 15\)"):
        slice_viewer(image, label[:, :, :15])
    with pytest.raises(DataError, match=r"prediction \(40, 29, 16\)"):
        plot_slices(image, label, label[:, :29])
    with pytest.raises(DataError, match=r"image must be a 3-D volume, got shape \(40, 30\)"):
        slice_viewer(image[:, :, 0])
    with pytest.raises(DataError, match="outside 0..15"):
        slice_viewer(image, index=16)
    with pytest.raises(DataError, match="axis must be"):
        slice_viewer(image, axis=3)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def test_nifti_paths_are_shown_in_canonical_ras(volumes, tmp_path: Path) -> None:
    image, label, _ = volumes
    lps = np.diag([-2.0, -2.0, 5.0, 1.0])
    img = _save(image.astype(np.int16) - 1000, lps, tmp_path / "ct.nii.gz")
    lab = _save(label, lps, tmp_path / "label.nii.gz")
    viewer = slice_viewer(img, lab, lab)
    ras = np.flip(image.astype(np.int16) - 1000, axis=(0, 1))        # LPS -> RAS flips x and y
    viewer.slider.value = 4
    assert np.array_equal(viewer.current_slice_data()["image"], ras[:, :, 4])
    assert np.array_equal(viewer.current_slice_data()["label"], np.flip(label, (0, 1))[:, :, 4])
    assert viewer._range == CT_WINDOW                                  # HU data: soft-tissue window
    other = _save(label, np.diag([2.0, 2.0, 5.0, 1.0]), tmp_path / "moved.nii.gz")
    with pytest.raises(DataError, match="moved.nii.gz: affine differs"):
        slice_viewer(img, other)
    with pytest.raises(DataError, match="missing.nii.gz: label file does not exist"):
        slice_viewer(img, tmp_path / "missing.nii.gz")


def test_plot_slices_returns_a_pyplot_free_figure(volumes) -> None:
    import matplotlib.pyplot as plt

    image, label, pred = volumes
    open_before = plt.get_fignums()
    fig = plot_slices(image, label, pred, title="case")
    assert isinstance(fig, Figure) and plt.get_fignums() == open_before
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"   # shows itself in a notebook, no pyplot needed
    assert len(fig.axes) == 3 * 3
    titles = [ax.get_title() for ax in fig.axes]
    rows = sorted({int(t.split()[-1].rstrip(")")) for t in titles})
    present = np.flatnonzero(label.any(axis=(0, 1)))
    assert len(rows) == 3 and all(present[0] <= r <= present[-1] for r in rows)
    assert titles[:3] == [f"image (axial {rows[0]})", f"label (axial {rows[0]})", f"output (axial {rows[0]})"]
    only_image = plot_slices(image, axis=1)
    assert len(only_image.axes) == 1 and only_image.axes[0].get_title() == f"image (coronal {SHAPE[1] // 2})"
    with pytest.raises(DataError, match=r"slices \[99\] are outside"):
        plot_slices(image, slices=[2, 99])


def test_the_viewer_displays_a_picture_beside_the_widget(volumes) -> None:
    """Front ends without widgets (saved HTML, GitHub, nbviewer) show the first view as PNG."""
    import base64

    image, label, pred = volumes
    viewer = slice_viewer(image, label, pred)
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == viewer.render_png()
