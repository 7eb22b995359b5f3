"""Looking at volumes: an interactive slice viewer and static slice figures.

MONAI's spleen tutorial shows three static panels per slice — *image*, *label*, *output*.
:func:`slice_viewer` makes them interactive with ipywidgets: a ``slice`` slider, an axis
selector (sagittal / coronal / axial), an overlay switch and an opacity slider. Each view is
composed with numpy from a windowed ``uint8`` copy of the volume made once, labelled and
encoded with Pillow into one PNG shown by an ``ipywidgets.Image`` -- a few milliseconds per
slider step even for 512 × 512 CT slices (a matplotlib figure per step took about a second),
and the same in JupyterLab, Colab and headless runs (no interactive matplotlib backend).
:func:`plot_slices` draws the same panels for a few slices into a static
:class:`matplotlib.figure.Figure` (for executed notebooks and HTML). The viewer's display
also carries a PNG of its first view, so saved notebooks, their HTML, GitHub and nbviewer
show a picture where no widget can run.

Inputs are numpy arrays, torch tensors (a leading channel of size 1 is dropped; a
multi-channel prediction is ``argmax``-ed) or NIfTI paths. Paths are loaded with nibabel and
shown in canonical RAS orientation (``nib.as_closest_canonical``), with the voxel spacing as
aspect ratio; arrays are shown as given, axes taken as (x, y, z). Slices are displayed in
the radiological convention CT is read in: transposed, origin at the bottom and the
horizontal axis reversed, so in RAS the patient's right is on the image's left (axial and
coronal views), anterior is on the left in sagittal views, and superior is up. Notebook 01's
three-plane view uses the same convention and :data:`CT_WINDOW`.

The 3-D view of a CT and its masks (NiiVue widget, surface figure) is in
:mod:`spleen_helpers.teaching.view3d`.

Example:
    >>> import numpy as np
    >>> vol = np.random.default_rng(0).normal(size=(32, 24, 16))
    >>> lab = (vol > 1.5).astype(np.uint8)
    >>> viewer = slice_viewer(vol, label=lab, axis=2)
    >>> viewer.slider.max, viewer.slider.description
    (15, 'slice')
    >>> viewer.slider.value = 3
    >>> bool((viewer.current_slice_data()["image"] == vol[:, :, 3]).all())
    True
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..data.nifti import check_same_grid, open_nifti
from ..ground.errors import DataError
from ..ground.figures import NotebookFigure

__all__ = ["AXIS_NAMES", "CT_WINDOW", "load_volume", "compose_panels", "SliceViewer", "slice_viewer", "plot_slices"]


AXIS_NAMES = ("sagittal", "coronal", "axial")  # the plane normal to array axis 0, 1, 2


CT_WINDOW = (-200.0, 300.0)                      # soft-tissue window in HU, as in notebook 01


# Okabe & Ito's colour-blind-safe pair: blue and orange stay apart for red-green colour
# blindness (about one man in twelve), where green and red do not.
_LABEL_COLOUR = "#0072B2"       # reference: blue


_PREDICTION_COLOUR = "#E69F00"  # prediction: orange


# ------------------------------------------------------------------------------ volumes
class _Volume:
    """A 3-D array with its voxel spacing and where it came from (for messages)."""

    def __init__(self, data: np.ndarray, spacing: tuple[float, float, float],
                 source: Path | None, affine: np.ndarray | None) -> None:
        self.data, self.spacing, self.source, self.affine = data, spacing, source, affine

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


def load_volume(value: Any, name: str = "image", mask: bool = False,
                spacing: Sequence[float] | None = None) -> _Volume:
    """A volume from an array, tensor or NIfTI path (canonical RAS); DataError when not 3-D.

    ``mask=True`` turns a multi-channel array (e.g. logits ``(2, X, Y, Z)``) into labels with
    ``argmax`` over the first axis.
    """
    source = affine = None
    zooms: tuple[float, ...] | None = None
    if isinstance(value, (str, os.PathLike)):
        import nibabel as nib

        source = Path(value)
        img = nib.as_closest_canonical(open_nifti(source, name, read_data=True)[0])
        arr = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor / MetaTensor
        pixdim = getattr(value, "pixdim", None)
        arr = value.detach().cpu().numpy()
        if pixdim is not None and spacing is None:
            try:
                zooms = tuple(float(z) for z in np.asarray(pixdim).reshape(-1)[-3:])
            except (TypeError, ValueError):
                zooms = None
    else:
        arr = np.asarray(value)
    arr = np.asarray(arr)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if mask and arr.ndim == 4:
        arr = np.argmax(arr, axis=0)
    if arr.ndim != 3:
        raise DataError(source, f"{name} must be a 3-D volume, got shape {tuple(arr.shape)}")
    if spacing is not None:
        zooms = tuple(float(s) for s in spacing)
    if zooms is None or len(zooms) != 3 or not all(z > 0 for z in zooms):
        zooms = (1.0, 1.0, 1.0)
    return _Volume(arr, zooms, source, affine)  # type: ignore[arg-type]


def _load_all(image: Any, label: Any, prediction: Any,
              spacing: Sequence[float] | None) -> tuple[_Volume, _Volume | None, _Volume | None]:
    img = load_volume(image, "image", spacing=spacing)
    lab = None if label is None else load_volume(label, "label", mask=True, spacing=img.spacing)
    pred = None if prediction is None else load_volume(prediction, "prediction", mask=True,
                                                       spacing=img.spacing)
    shapes = {"image": img.data.shape} | ({"label": lab.data.shape} if lab else {}) | \
        ({"prediction": pred.data.shape} if pred else {})
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        where = next((v.source for v in (lab, pred, img) if v is not None and v.source), None)
        raise DataError(where, f"shapes differ: {listed}; image, label and prediction must be "
                               "the same grid")
    for other, what in ((lab, "label"), (pred, "prediction")):
        if other is not None and other.affine is not None and img.affine is not None:
            check_same_grid(img, other, img.source, other.source, what)
    return img, lab, pred


def _window(volume: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    """Display range: ``window``, the CT soft-tissue window for HU data, else the 0.5-99.5 percentiles."""
    if window is not None:
        return float(window[0]), float(window[1])
    lo = float(volume.min()) if volume.size else 0.0
    if lo <= -500:  # Hounsfield units (air is about -1000)
        return CT_WINDOW
    p_lo, p_hi = (float(v) for v in np.percentile(volume, [0.5, 99.5]))
    return (p_lo, p_hi if p_hi > p_lo else p_lo + 1.0)


def _busiest_slice(masks: Sequence[np.ndarray | None], axis: int, size: int) -> int:
    """The slice with the most mask voxels along ``axis`` (the middle one when all are empty)."""
    for m in masks:
        if m is not None and m.any():
            other = tuple(a for a in range(3) if a != axis)
            return int(np.argmax((m > 0).sum(axis=other)))
    return size // 2


def _aspect(spacing: tuple[float, float, float], axis: int) -> float:
    """Height/width of a displayed pixel: the shown plane is ``take(k, axis).T``."""
    cols, rows = (a for a in range(3) if a != axis)
    return spacing[rows] / spacing[cols]


# ------------------------------------------------------------------------------ drawing
def _draw_row(axes: Sequence[Any], planes: dict[str, np.ndarray | None], titles: dict[str, str],
              vrange: tuple[float, float], aspect: float, overlay: bool, opacity: float) -> None:
    """Draw the image / label / output panels of one slice into ``axes``."""
    from matplotlib.colors import ListedColormap

    image = planes["image"]
    kinds = [k for k in ("image", "label", "prediction") if planes.get(k) is not None]
    colours = {"label": _LABEL_COLOUR, "prediction": _PREDICTION_COLOUR}
    for ax, kind in zip(axes, kinds):
        plane = planes[kind]
        assert plane is not None
        if kind == "image" or overlay:
            ax.imshow(image.T, cmap="gray", vmin=vrange[0], vmax=vrange[1], origin="lower",
                      aspect=aspect, interpolation="nearest")
        if kind != "image":
            if overlay:
                shown = np.ma.masked_where(plane.T == 0, plane.T)
                ax.imshow(shown, cmap=ListedColormap([colours[kind]]), alpha=opacity, vmin=0, vmax=1,
                          origin="lower", aspect=aspect, interpolation="nearest")
                reference = planes.get("label")
                if kind == "prediction" and reference is not None and 0 < reference.sum() < reference.size:
                    ax.contour(reference.T > 0, levels=[0.5], colors=[_LABEL_COLOUR], linewidths=1.0,
                               origin="lower")
            else:
                ax.imshow(plane.T, cmap="gray", vmin=0, vmax=1, origin="lower", aspect=aspect,
                          interpolation="nearest")
        # Radiological convention, as CT is read: the patient's right (RAS +x) on the image's
        # left in axial and coronal views, anterior on the left in sagittal ones.
        ax.invert_xaxis()
        ax.set_title(titles[kind], fontsize=10)
        ax.set_axis_off()


def _planes(vols: dict[str, Any], axis: int, index: int) -> dict[str, np.ndarray | None]:
    return {k: (None if v is None else np.take(v.data, index, axis=axis)) for k, v in vols.items()}


# ------------------------------------------------------------------- fast viewer drawing
def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], np.float32)


def _windowed(volume: np.ndarray, vrange: tuple[float, float]) -> np.ndarray:
    """The volume in the display window as ``uint8`` (0 = ``vrange[0]`` or below, 255 = the top)."""
    lo, hi = vrange
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.empty(volume.shape, np.uint8)
    step = max(1, volume.shape[-1] // 8)
    for k in range(0, volume.shape[-1], step):   # in slabs: no full-size float copy of a CT
        part = (np.asarray(volume[..., k:k + step], np.float32) - lo) * scale
        np.clip(part, 0.0, 255.0, out=part)
        out[..., k:k + step] = part.astype(np.uint8)
    return out


def _shown(plane: np.ndarray) -> np.ndarray:
    """A slice as displayed: transposed, origin at the bottom, the horizontal axis reversed
    (radiological convention; matplotlib's ``imshow(plane.T, origin="lower")`` + ``invert_xaxis``)."""
    return plane.T[::-1, ::-1]


def _panel_size(rows: int, cols: int, aspect: float, size: int) -> tuple[int, int]:
    """(width, height) in pixels of a panel whose longer side is ``size``, at the voxel aspect."""
    height, width = rows * aspect, float(cols)
    scale = size / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` that touch the background (4-neighbourhood): a one-pixel contour."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]
                         & mask[1:-1, :-2] & mask[1:-1, 2:])
    return mask & ~inner


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    """matplotlib's DejaVu Sans (the static figures' font) for the panel titles."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def compose_panels(gray: np.ndarray, masks: dict[str, np.ndarray | None], titles: dict[str, str],
                   aspect: float, overlay: bool, opacity: float, size: int = 288) -> Any:
    """The image / label / output panels of one slice as a Pillow RGB image, composed with numpy.

    ``gray`` is the slice in the display window as ``uint8``, ``masks`` the label and
    prediction slices (``None`` where absent), all as ``volume.take(index, axis)``; they are
    shown in the radiological convention at the voxels' ``aspect`` (height / width), each panel
    ``size`` pixels on its longer side. With ``overlay`` the masks are blended over the image
    with ``opacity`` (label blue, prediction orange with the label's outline in blue); without,
    they are shown black and white. :class:`SliceViewer` draws every view with it.

    >>> img = compose_panels(np.zeros((40, 30), np.uint8), {"label": np.ones((40, 30), bool)},
    ...                      {"image": "image", "label": "label"}, 1.0, True, 0.5, size=80)
    >>> img.size, img.getpixel((120, 60))
    ((176, 81), (0, 57, 89))
    """
    from PIL import Image, ImageDraw

    shown = _shown(gray)
    width, height = _panel_size(*shown.shape, aspect, size)
    resample = Image.Resampling.NEAREST if width >= shown.shape[1] else Image.Resampling.BOX
    base = np.asarray(Image.fromarray(np.ascontiguousarray(shown)).resize((width, height), resample))
    kinds = ["image"] + [k for k in ("label", "prediction") if masks.get(k) is not None]
    fitted = {k: np.asarray(Image.fromarray(np.ascontiguousarray(_shown(masks[k])).astype(np.uint8) * 255)
                            .resize((width, height), Image.Resampling.NEAREST)) > 127
              for k in kinds[1:]}
    colours = {"label": _rgb(_LABEL_COLOUR), "prediction": _rgb(_PREDICTION_COLOUR)}
    font = _font(max(9, round(size / 26)))
    title_h, gap = font.size + 8, max(4, size // 36)
    canvas = Image.new("RGB", (len(kinds) * (width + 2 * gap), title_h + height + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for n, kind in enumerate(kinds):
        if kind == "image" or overlay:
            panel = np.repeat(base[:, :, None], 3, axis=2)
            if kind != "image":
                where = fitted[kind]
                blended = panel[where].astype(np.float32) * (1.0 - opacity) + colours[kind] * opacity
                panel[where] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
                reference = fitted.get("label")
                if kind == "prediction" and reference is not None and reference.any():
                    panel[_outline(reference)] = colours["label"].astype(np.uint8)
        else:
            panel = np.repeat((fitted[kind].astype(np.uint8) * 255)[:, :, None], 3, axis=2)
        left = n * (width + 2 * gap) + gap
        canvas.paste(Image.fromarray(panel), (left, title_h))
        draw.text((left + width / 2, title_h / 2), titles.get(kind, kind), fill="black", font=font,
                  anchor="mm")
    return canvas


# ------------------------------------------------------------------------------- viewer
class SliceViewer:
    """The interactive viewer built by :func:`slice_viewer`; its widgets are attributes.

    ``widget`` (the root ``VBox``), ``slider`` (``IntSlider`` "slice"), ``axis``
    (``ToggleButtons``: sagittal/coronal/axial), ``overlay`` (``Checkbox``), ``opacity``
    (``FloatSlider``) and ``image`` (the ``ipywidgets.Image`` holding the PNG). Displaying
    the object displays ``widget``.
    """

    def __init__(self, image: Any, label: Any = None, prediction: Any = None, axis: int = 2,
                 index: int | None = None, window: tuple[float, float] | None = None,
                 spacing: Sequence[float] | None = None, overlay: bool = True, opacity: float = 0.45,
                 titles: Sequence[str] = ("image", "label", "output"), panel_size: float = 3.6,
                 dpi: int = 80) -> None:
        import ipywidgets as widgets

        if axis not in (0, 1, 2):
            raise DataError(None, f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis!r}")
        img, lab, pred = _load_all(image, label, prediction, spacing)
        self._vols = {"image": img, "label": lab, "prediction": pred}
        self._range = _window(img.data, window)
        self._titles = dict(zip(("image", "label", "prediction"), titles))
        self._panel_size, self._dpi = panel_size, dpi
        self._panel_px = max(32, round(panel_size * dpi))
        self._masks = [v.data for v in (lab, pred) if v is not None]
        # Made once, not per slider step: the windowed uint8 volume and the masks as booleans.
        self._gray = _windowed(img.data, self._range)
        self._bool = {k: (None if v is None else np.asarray(v.data) > 0) for k, v in
                      (("label", lab), ("prediction", pred))}
        shape = img.data.shape
        start = _busiest_slice(self._masks, axis, shape[axis]) if index is None else int(index)
        if not 0 <= start < shape[axis]:
            raise DataError(None, f"slice {index} is outside 0..{shape[axis] - 1} along the "
                                  f"{AXIS_NAMES[axis]} axis")

        self.slider = widgets.IntSlider(value=start, min=0, max=shape[axis] - 1, step=1,
                                        description="slice", continuous_update=True)
        self.axis = widgets.ToggleButtons(options=[(n, i) for i, n in enumerate(AXIS_NAMES)],
                                          value=axis, description="axis")
        self.overlay = widgets.Checkbox(value=overlay, description="overlay", indent=False)
        self.opacity = widgets.FloatSlider(value=opacity, min=0.0, max=1.0, step=0.05,
                                           description="opacity", readout_format=".2f")
        self.image = widgets.Image(format="png")
        self.image.add_class("spleen-slice-image")
        controls = widgets.HBox([self.slider, self.overlay, self.opacity])
        self.widget = widgets.VBox([self.axis, controls, self.image])
        self.widget.add_class("spleen-slice-viewer")

        self.slider.observe(self._on_change, names="value")
        self.overlay.observe(self._on_change, names="value")
        self.opacity.observe(self._on_change, names="value")
        self.axis.observe(self._on_axis, names="value")
        self._updating = False
        self.redraw()

    # -- state ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self._vols["image"].data.shape)  # type: ignore[return-value]

    def current_slice_data(self) -> dict[str, np.ndarray | None]:
        """The 2-D arrays shown now: ``volume.take(slice, axis)`` for image, label, prediction.

        (The picture shows them transposed, origin at the bottom.) Missing inputs are None.
        """
        return _planes(self._vols, int(self.axis.value), int(self.slider.value))

    # -- drawing ----------------------------------------------------------------------
    def figure(self) -> Figure:
        """The current view as a pyplot-free matplotlib Figure (one panel per input), the way
        :func:`plot_slices` draws: for saving at any resolution
        (``viewer.figure().savefig("slice.png", dpi=200)``). The widget itself shows
        :meth:`render_png`, the same panels composed without matplotlib (a figure per slider
        step took about a second on a 512 × 512 CT).
        """
        axis, index = int(self.axis.value), int(self.slider.value)
        planes = self.current_slice_data()
        n = sum(p is not None for p in planes.values())
        fig = Figure(figsize=(self._panel_size * n, self._panel_size), dpi=self._dpi)
        axes = fig.subplots(1, n, squeeze=False)[0]
        titles = {k: f"{t} ({AXIS_NAMES[axis]} {index})" for k, t in self._titles.items()}
        _draw_row(axes, planes, titles, self._range, _aspect(self._vols["image"].spacing, axis),
                  bool(self.overlay.value), float(self.opacity.value))
        fig.tight_layout()
        return fig

    def render_png(self) -> bytes:
        """The current view as PNG bytes: the panels composed with numpy, encoded once by Pillow."""
        axis, index = int(self.axis.value), int(self.slider.value)
        at = (slice(None),) * axis + (index,)   # a view of the slice (np.take copies through a gather)
        masks = {k: (None if m is None else m[at]) for k, m in self._bool.items()}
        titles = {k: f"{t} ({AXIS_NAMES[axis]} {index})" for k, t in self._titles.items()}
        picture = compose_panels(self._gray[at], masks, titles,
                                 _aspect(self._vols["image"].spacing, axis), bool(self.overlay.value),
                                 float(self.opacity.value), size=self._panel_px)
        buf = io.BytesIO()
        picture.save(buf, format="PNG", compress_level=1)   # fast: the bytes only cross to the browser
        return buf.getvalue()

    def redraw(self) -> None:
        """Render the current slice into the image widget."""
        self.image.value = self.render_png()

    def _on_change(self, _change: dict[str, Any]) -> None:
        if not self._updating:
            self.redraw()

    def _on_axis(self, change: dict[str, Any]) -> None:
        """New axis: the slider's range becomes that axis' (value clipped into it), then one redraw."""
        top = self.shape[int(change["new"])] - 1
        self._updating = True
        try:
            if self.slider.value > top:
                self.slider.value = top
            self.slider.max = top
        finally:
            self._updating = False
        self.redraw()

    # -- display ----------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget, plus a PNG of the current view for front ends that cannot run widgets.

        JupyterLab and Colab show the live widget; a saved notebook's HTML, GitHub and
        nbviewer (which keep no widget state) show the picture instead of nothing.
        """
        import base64

        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data = dict(data or {})
        data["image/png"] = base64.b64encode(self.render_png()).decode("ascii")
        return (data, bundle[1]) if isinstance(bundle, tuple) else data


def slice_viewer(image: Any, label: Any = None, prediction: Any = None, axis: int = 2,
                 index: int | None = None, window: tuple[float, float] | None = None,
                 spacing: Sequence[float] | None = None, overlay: bool = True,
                 opacity: float = 0.45) -> SliceViewer:
    """An interactive image / label / output viewer (ipywidgets); the last expression of a cell shows it.

    ``image``, ``label`` and ``prediction`` are arrays, tensors or NIfTI paths on the same
    grid (else a DataError naming the shapes). ``axis`` 0/1/2 = sagittal/coronal/axial;
    ``index`` defaults to the slice with the most label (or prediction) voxels. ``window``
    is the display range (default: soft-tissue window for HU, else percentiles).
    With ``overlay`` on, masks are drawn over the image (label blue, prediction orange with
    the label's outline in blue: a colour-blind-safe pair); off, they are shown as plain
    black-and-white masks.

    >>> viewer = slice_viewer("ct.nii.gz", "label.nii.gz", "pred.nii.gz")   # doctest: +SKIP
    >>> viewer                                                               # doctest: +SKIP
    """
    return SliceViewer(image, label, prediction, axis=axis, index=index, window=window,
                       spacing=spacing, overlay=overlay, opacity=opacity)


# ------------------------------------------------------------------------------- static
def plot_slices(image: Any, label: Any = None, prediction: Any = None,
                slices: Sequence[int] | None = None, axis: int = 2,
                window: tuple[float, float] | None = None, spacing: Sequence[float] | None = None,
                overlay: bool = True, opacity: float = 0.45, title: str | None = None,
                titles: Sequence[str] = ("image", "label", "output"), panel_size: float = 3.2) -> Figure:
    """Static image / label / output panels, one row per slice; returns a matplotlib Figure.

    The figure is made without pyplot (nothing leaks between calls) and shows itself as a
    PNG when it is the last expression of a notebook cell.

    ``slices`` default to three slices through the label (or prediction): at a quarter, half
    and three quarters of its extent along ``axis``, or the middle slice when no mask is given.

    >>> import numpy as np
    >>> fig = plot_slices(np.zeros((8, 8, 6)), np.ones((8, 8, 6)), slices=[1, 4])
    >>> len(fig.axes)
    4
    """
    if axis not in (0, 1, 2):
        raise DataError(None, f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis!r}")
    img, lab, pred = _load_all(image, label, prediction, spacing)
    vols = {"image": img, "label": lab, "prediction": pred}
    size = img.data.shape[axis]
    if slices is None:
        mask = next((v.data for v in (lab, pred) if v is not None and v.data.any()), None)
        if mask is None:
            slices = [size // 2]
        else:
            other = tuple(a for a in range(3) if a != axis)
            present = np.flatnonzero((mask > 0).any(axis=other))
            lo, hi = int(present[0]), int(present[-1])
            slices = sorted({lo + (hi - lo) * q // 4 for q in (1, 2, 3)})
    bad = [s for s in slices if not 0 <= int(s) < size]
    if bad:
        raise DataError(None, f"slices {bad} are outside 0..{size - 1} along the {AXIS_NAMES[axis]} axis")
    vrange = _window(img.data, window)
    n_cols = sum(v is not None for v in vols.values())
    fig = NotebookFigure(figsize=(panel_size * n_cols, panel_size * len(slices)), dpi=80)
    grid = fig.subplots(len(slices), n_cols, squeeze=False)
    names = dict(zip(("image", "label", "prediction"), titles))
    for row, index in zip(grid, slices):
        row_titles = {k: f"{t} ({AXIS_NAMES[axis]} {int(index)})" for k, t in names.items()}
        _draw_row(row, _planes(vols, axis, int(index)), row_titles, vrange,
                  _aspect(img.spacing, axis), overlay, opacity)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
