"""See what each preprocessing transform does, and where the random training patches come from.

Notebook 02 uses these helpers to open up MONAI's pipeline:

* :func:`apply_step_by_step` runs the deterministic steps
  (:func:`~spleen_helpers.engine.transforms.preprocessing_steps`) one at a time on one case and keeps,
  for each, a light :class:`StepSummary`: spatial shape, voxel spacing, orientation codes,
  intensity range and histogram, spleen volume, and the axial slice through the *same
  anatomical point* (the spleen's centre in world millimetres), whatever the step did to the
  voxel grid;
* :func:`plot_steps`, :func:`plot_intensity_scaling`, :func:`plot_crop_foreground` and
  :func:`plot_check_transforms` draw them (MONAI tutorial's figures, made for any volume size);
* :func:`sample_patches` draws training patches with the exact ``RandCropByPosNegLabeld`` of
  :func:`~spleen_helpers.engine.transforms.train_transforms` and reads each patch's centre from
  MONAI's crop metadata; :func:`plot_patch_centres` and :func:`plot_patches` show them.

Every plot returns a pyplot-free :class:`~spleen_helpers.ground.figures.NotebookFigure` (a
matplotlib ``Figure`` that Jupyter shows as PNG; :func:`~spleen_helpers.ground.figures.save_figure` writes it to a file).
Slices are drawn in array order (first array axis to the right, second upwards), so a flip
by ``Orientationd`` is visible as a mirrored image; axis labels name the anatomical
direction each array axis runs towards.

Example:
    >>> import tempfile
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> from spleen_helpers.data.dataset import load_datalist
    >>> from spleen_helpers.data.phantom import write_synthetic_dataset
    >>> from spleen_helpers.engine.transforms import preprocessing_steps
    >>> case = load_datalist(write_synthetic_dataset(tempfile.mkdtemp(), num_cases=1))[0]
    >>> steps = apply_step_by_step(case, preprocessing_steps(CourseConfig.synthetic(pixdim=(4.0, 4.0, 4.0))))
    >>> [s.axcodes for s in steps][3:5]
    ['LPS', 'RAS']
    >>> steps[-1].spacing
    (4.0, 4.0, 4.0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from monai.transforms import RandCropByPosNegLabeld

from ..data.nifti import volume_ml
from ..engine.transforms import train_transforms
from ..ground.errors import ConfigError, DataError
from ..ground.figures import NotebookFigure
from ..ground.settings import CourseConfig

__all__ = ["select_case", "StepSummary", "spleen_centre_mm", "apply_step_by_step", "summary_table", "plot_steps", "plot_intensity_scaling", "plot_crop_foreground", "plot_check_transforms", "Patch", "sample_patches", "centre_range", "plot_patch_centres", "plot_patches"]


LABEL_COLOUR = "tab:red"


SPLEEN_MARKER = dict(marker="o", color="tab:red")


BACKGROUND_MARKER = dict(marker="X", color="tab:cyan")


# ----------------------------------------------------------------------------- summaries
def select_case(files: Sequence[Mapping[str, str]], index: int) -> dict[str, str]:
    """Case ``index`` of a data list (negative counts from the end); a ConfigError when out of range.

    >>> select_case([{"image": "a.nii.gz"}, {"image": "b.nii.gz"}], -1)
    {'image': 'b.nii.gz'}
    """
    if not files:
        raise DataError(None, "the data list holds no cases")
    if not -len(files) <= index < len(files):
        raise ConfigError(None, f"case index {index} is out of range: the data set has {len(files)} "
                                f"cases (0..{len(files) - 1})")
    return dict(files[index])


@dataclass(eq=False)
class StepSummary:
    """What one transform left behind: geometry, intensities and one slice (not the volume).

    ``shape`` is spatial (channel dropped); ``spacing`` is in mm per array axis and
    ``axcodes`` names the direction each array axis runs towards (``"LPS"``, ``"RAS"``), both
    ``None`` when the step's output carries no affine (``affine``: voxel to world mm).
    ``image_slice``/``label_slice`` are the plane through the tracked world point,
    perpendicular to ``slice_axis``; ``crop_box`` is the (start, end) voxel box a
    ``CropForegroundd`` step kept, in the grid before it.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None
    axcodes: str | None
    value_min: float
    value_max: float
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    slice_axis: int
    slice_index: int
    image_slice: np.ndarray
    label_slice: np.ndarray | None
    spleen_voxels: int | None
    spleen_ml: float | None
    crop_box: tuple[tuple[int, ...], tuple[int, ...]] | None
    seconds: float
    affine: np.ndarray | None = None

    @property
    def plane_axes(self) -> tuple[int, int]:
        """The two array axes of ``image_slice``, in order (horizontal, vertical when drawn)."""
        axes = [a for a in range(len(self.shape)) if a != self.slice_axis]
        return axes[0], axes[1]

    def describe(self) -> str:
        """One line: name, shape, spacing, orientation, intensity range, spleen volume."""
        spacing = "?" if self.spacing is None else " x ".join(f"{s:g}" for s in self.spacing) + " mm"
        spleen = "" if self.spleen_ml is None else f", spleen {self.spleen_ml:.1f} mL"
        return (f"{self.index}. {self.name}: shape {self.shape}, spacing {spacing}, "
                f"{self.axcodes or '?'}, values {self.value_min:g} .. {self.value_max:g}{spleen}")


def _array(x: Any) -> np.ndarray:
    """A (MetaTensor, tensor or array) volume as a 3-D numpy array (first channel if any)."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim != 3:
        raise DataError(None, f"expected a 3-D volume (optionally with one channel first), "
                              f"got an array of shape {tuple(arr.shape)}")
    return arr


def _affine(x: Any) -> np.ndarray | None:
    aff = getattr(x, "affine", None)
    if aff is None:
        return None
    aff = aff.detach().cpu().numpy() if hasattr(aff, "detach") else np.asarray(aff)
    return aff.astype(np.float64)


def spleen_centre_mm(label: Any, affine: np.ndarray | None = None) -> np.ndarray:
    """World coordinates (mm) of the label's centroid; the volume centre when the label is empty.

    Without an affine the result is in voxel coordinates.

    >>> lab = np.zeros((4, 4, 4)); lab[1:3, 1:3, 1:3] = 1
    >>> spleen_centre_mm(lab, np.diag([2.0, 2.0, 2.0, 1.0])).tolist()
    [3.0, 3.0, 3.0]
    """
    arr = _array(label)
    idx = np.argwhere(arr > 0)
    centre = idx.mean(axis=0) if len(idx) else (np.array(arr.shape, dtype=float) - 1) / 2
    if affine is None:
        return centre.astype(float)
    return (np.asarray(affine, dtype=float) @ np.append(centre, 1.0))[:3]


def _slice_through(volume: np.ndarray, affine: np.ndarray | None,
                   world_point: np.ndarray | None) -> tuple[int, int, np.ndarray]:
    """(axis, index, plane): the axial plane (the axis running head-foot) through ``world_point``."""
    if affine is None or world_point is None:
        axis = 2
        index = volume.shape[axis] // 2
    else:
        axis = int(np.argmax(np.abs(affine[2, :3])))  # the array axis most aligned with world z
        voxel = np.linalg.inv(affine) @ np.append(world_point, 1.0)
        index = int(np.clip(round(float(voxel[axis])), 0, volume.shape[axis] - 1))
    return axis, index, np.take(volume, index, axis=axis)


def apply_step_by_step(data: Mapping[str, Any], steps: Sequence[Callable[[Any], Any]], *,
                       image_key: str = "image", label_key: str = "label",
                       world_point: Sequence[float] | None = None,
                       bins: int = 64) -> list[StepSummary]:
    """Apply ``steps`` one after the other to ``data``; summarise the output of each.

    ``data`` is a MONAI data dict (file paths before ``LoadImaged``). The slice of every
    summary passes through ``world_point`` (mm); by default the spleen's centre after the
    first step, so the same anatomy is shown however the steps crop, flip or resample.
    Random crops that return several samples do not fit here: use :func:`sample_patches`.
    """
    if bins < 1:
        raise ConfigError(None, f"bins must be >= 1, got {bins}")
    current: Any = dict(data)
    point = None if world_point is None else np.asarray(world_point, dtype=float)
    summaries: list[StepSummary] = []
    for index, step in enumerate(steps):
        name = type(step).__name__
        before_keys = set(current)
        t0 = time.perf_counter()
        current = step(current)
        seconds = time.perf_counter() - t0
        if not isinstance(current, Mapping):
            raise ConfigError(None, f"step {index} ({name}) returned {type(current).__name__}, not one "
                                    "data dict; apply_step_by_step takes one-to-one steps (random "
                                    "crops: use sample_patches)")
        if image_key not in current:
            raise DataError(None, f"step {index} ({name}) output has no {image_key!r} key "
                                  f"(keys: {sorted(map(str, current))})")
        image = _array(current[image_key])
        affine = _affine(current[image_key])
        label = _array(current[label_key]) if label_key in current else None
        if label is not None and label.shape != image.shape:
            raise DataError(None, f"after step {index} ({name}) the label's shape {label.shape} "
                                  f"differs from the image's {image.shape}")
        if point is None and affine is not None:
            point = spleen_centre_mm(label if label is not None else image * 0, affine)
        axis, k, plane = _slice_through(image, affine, point)
        spacing = None if affine is None else tuple(
            round(float(s), 4) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
        voxels = None if label is None else int((label > 0).sum())
        values = image[np.isfinite(image)] if image.dtype.kind == "f" else image
        counts, edges = np.histogram(values, bins=bins)
        crop_box = None
        if "foreground_start_coord" in current and "foreground_start_coord" not in before_keys:
            crop_box = (tuple(int(v) for v in np.asarray(current["foreground_start_coord"])),
                        tuple(int(v) for v in np.asarray(current["foreground_end_coord"])))
        summaries.append(StepSummary(
            index=index, name=name, shape=tuple(int(n) for n in image.shape), spacing=spacing,
            axcodes=None if affine is None else "".join(nib.aff2axcodes(affine)),
            value_min=float(values.min()), value_max=float(values.max()),
            hist_counts=counts, hist_edges=edges, slice_axis=axis, slice_index=k,
            image_slice=np.array(plane, dtype=np.float32),
            label_slice=None if label is None else np.take(label, k, axis=axis) > 0,
            spleen_voxels=voxels,
            spleen_ml=None if voxels is None or spacing is None else volume_ml(voxels, spacing),
            crop_box=crop_box, seconds=seconds, affine=affine))
    return summaries


def summary_table(summaries: Sequence[StepSummary]) -> str:
    """A fixed-width text table of the summaries, one row per step."""
    rows = [("#", "transform", "shape", "spacing (mm)", "axes", "min", "max", "spleen mL", "s")]
    for s in summaries:
        rows.append((str(s.index), s.name, "x".join(map(str, s.shape)),
                     "-" if s.spacing is None else "x".join(f"{v:g}" for v in s.spacing),
                     s.axcodes or "-", f"{s.value_min:.4g}", f"{s.value_max:.4g}",
                     "-" if s.spleen_ml is None else f"{s.spleen_ml:.1f}", f"{s.seconds:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(r, widths))) for r in rows)


# ----------------------------------------------------------------------------- plotting
def _axis_label(summary: StepSummary, axis: int) -> str:
    if summary.axcodes is None:
        return f"array axis {axis}"
    return f"array axis {axis} → {summary.axcodes[axis]}"


def _draw_slice(ax: Any, summary: StepSummary, title: str | None = None,
                vmin: float | None = None, vmax: float | None = None) -> None:
    """The summary's slice in array order (axis a to the right, axis b up), spleen outlined."""
    a, b = summary.plane_axes
    aspect = 1.0 if summary.spacing is None else summary.spacing[b] / summary.spacing[a]
    ax.imshow(summary.image_slice.T, cmap="gray", origin="lower", aspect=aspect,
              vmin=summary.value_min if vmin is None else vmin,
              vmax=summary.value_max if vmax is None else vmax, interpolation="nearest")
    lab = summary.label_slice
    if lab is not None and lab.any() and not lab.all():
        ax.contour(lab.T.astype(float), levels=[0.5], colors=LABEL_COLOUR, linewidths=1.0)
    ax.set_xlabel(_axis_label(summary, a), fontsize=8)
    ax.set_ylabel(_axis_label(summary, b), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title if title is not None else
                 f"{summary.index}. {summary.name}\n{'x'.join(map(str, summary.shape))}"
                 f" | {summary.axcodes or '?'} | slice {summary.slice_index}", fontsize=9)


def _draw_histogram(ax: Any, summary: StepSummary, colour: str = "tab:blue") -> None:
    filled = summary.hist_counts > 0  # empty bins have no bar on a log axis
    ax.bar(summary.hist_edges[:-1][filled], summary.hist_counts[filled],
           width=np.diff(summary.hist_edges)[filled], align="edge", color=colour, log=True)
    ax.set_xlim(summary.hist_edges[0], summary.hist_edges[-1])
    ax.set_title(f"intensities {summary.value_min:.4g} .. {summary.value_max:.4g}", fontsize=9)
    ax.set_xlabel("value", fontsize=8)
    ax.set_ylabel("voxels (log)", fontsize=8)
    ax.tick_params(labelsize=7)


def plot_steps(summaries: Sequence[StepSummary]) -> Figure:
    """One row per step: the slice through the tracked point and the intensity histogram."""
    if not summaries:
        raise ConfigError(None, "no step summaries to plot")
    fig = NotebookFigure(figsize=(10, 3.1 * len(summaries)))
    axes = fig.subplots(len(summaries), 2, squeeze=False,
                        gridspec_kw={"width_ratios": [1.0, 1.4]})
    for (ax_img, ax_hist), s in zip(axes, summaries):
        _draw_slice(ax_img, s)
        _draw_histogram(ax_hist, s)
        spacing = "?" if s.spacing is None else " x ".join(f"{v:g}" for v in s.spacing)
        spleen = "" if s.spleen_ml is None else f"\nspleen {s.spleen_ml:.1f} mL"
        ax_hist.text(0.98, 0.95, f"shape {s.shape}\nspacing {spacing} mm{spleen}",
                     transform=ax_hist.transAxes, ha="right", va="top", fontsize=8,
                     bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    fig.tight_layout()
    return fig


def plot_intensity_scaling(before: StepSummary, after: StepSummary, cfg: CourseConfig) -> Figure:
    """``ScaleIntensityRanged``: HU window ``[a_min, a_max]`` mapped to ``[b_min, b_max]`` (clipped)."""
    fig = NotebookFigure(figsize=(11, 7))
    (ax0, ax1), (ax2, ax3) = fig.subplots(2, 2)
    _draw_slice(ax0, before, title=f"before: HU {before.value_min:g} .. {before.value_max:g}")
    _draw_slice(ax1, after, title=f"after: {after.value_min:g} .. {after.value_max:g}")
    _draw_histogram(ax2, before, colour="tab:gray")
    ax2.axvspan(cfg.a_min, cfg.a_max, color="tab:orange", alpha=0.3,
                label=f"window {cfg.a_min:g} .. {cfg.a_max:g} HU")
    ax2.legend(loc="upper right", fontsize=8)
    ax2.set_xlabel("HU", fontsize=8)
    _draw_histogram(ax3, after, colour="tab:orange")
    clipped = "clipped" if cfg.clip else "not clipped"
    ax3.set_xlabel(f"scaled value ({cfg.a_min:g} HU → {cfg.b_min:g}, {cfg.a_max:g} HU → "
                   f"{cfg.b_max:g}, {clipped})", fontsize=8)
    fig.tight_layout()
    return fig


def plot_crop_foreground(before: StepSummary, after: StepSummary) -> Figure:
    """``CropForegroundd``: the kept box drawn on the slice before, and the slice after."""
    if after.crop_box is None:
        raise ConfigError(None, f"step {after.index} ({after.name}) did not record a foreground box "
                                "(foreground_start_coord); pass the CropForegroundd step's summary")
    fig = NotebookFigure(figsize=(11, 4.6))
    ax0, ax1 = fig.subplots(1, 2)
    start, end = after.crop_box
    a, b = before.plane_axes
    kept = math.prod(after.shape) / math.prod(before.shape)
    _draw_slice(ax0, before, title=f"before: {'x'.join(map(str, before.shape))}")
    ax0.add_patch(Rectangle((start[a] - 0.5, start[b] - 0.5), end[a] - start[a], end[b] - start[b],
                            fill=False, edgecolor="tab:orange", linewidth=2, label="foreground box"))
    ax0.legend(loc="upper right", fontsize=8)
    _draw_slice(ax1, after, title=f"after: {'x'.join(map(str, after.shape))} "
                                  f"({kept:.0%} of the voxels kept)")
    fig.tight_layout()
    return fig


def plot_check_transforms(image: Any, label: Any, slice_index: int | None = None) -> Figure:
    """The tutorial's "check transforms" figure: image and label at one axial slice.

    ``slice_index`` defaults to the slice with the most spleen (the tutorial's fixed slice
    80 does not exist in small volumes).
    """
    img, lab = _array(image), _array(label)
    if img.shape != lab.shape:
        raise DataError(None, f"image shape {img.shape} and label shape {lab.shape} differ")
    if slice_index is None:
        per_slice = (lab > 0).sum(axis=(0, 1))
        slice_index = int(per_slice.argmax()) if per_slice.any() else img.shape[2] // 2
    if not 0 <= slice_index < img.shape[2]:
        raise ConfigError(None, f"slice_index {slice_index} is outside 0..{img.shape[2] - 1}")
    fig = NotebookFigure(figsize=(11, 5))
    ax0, ax1 = fig.subplots(1, 2)
    ax0.imshow(img[:, :, slice_index].T, cmap="gray", origin="lower")
    ax0.set_title(f"image {tuple(img.shape)}, slice {slice_index}")
    ax1.imshow(lab[:, :, slice_index].T, origin="lower", interpolation="nearest")
    ax1.set_title(f"label, slice {slice_index}")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- random patches
@dataclass(eq=False)
class Patch:
    """One training patch drawn by ``RandCropByPosNegLabeld`` and where it came from."""

    index: int
    centre: tuple[int, ...]        # voxel of the preprocessed volume at the patch centre
    centre_in_spleen: bool         # is the centre voxel itself spleen?
    spleen_fraction: float         # share of the patch's voxels that are spleen
    image: np.ndarray
    label: np.ndarray

    @property
    def has_spleen(self) -> bool:
        """True when any voxel of the patch is spleen (the network sees the organ)."""
        return self.spleen_fraction > 0


def sample_patches(data: Mapping[str, Any], cfg: CourseConfig, num_samples: int | None = None,
                   seed: int = 0, *, image_key: str = "image", label_key: str = "label") -> list[Patch]:
    """Draw patches as training does: the ``RandCropByPosNegLabeld`` of ``train_transforms(cfg)``.

    ``data`` is a preprocessed case (the output of ``preprocessing_steps(cfg)``, padded to
    the patch size). Centres come from MONAI's per-patch ``crop_center`` metadata. Same
    ``seed`` → same patches.
    """
    n = cfg.num_samples if num_samples is None else int(num_samples)
    if n < 1:
        raise ConfigError(None, f"num_samples must be >= 1, got {n}")
    pipeline = train_transforms(cfg.replace(num_samples=n, augment=False))
    cropper = next(t for t in pipeline.transforms if isinstance(t, RandCropByPosNegLabeld))
    cropper.set_random_state(seed=seed)
    samples = cropper(dict(data))
    label = _array(data[label_key])
    patches = []
    for i, sample in enumerate(samples):
        meta = getattr(sample[image_key], "meta", {})
        centre = meta.get("crop_center") if isinstance(meta, Mapping) else None
        if centre is None:  # without MetaTensors: the cropper keeps the centres it last drew
            centre = cropper.cropper.centers[i]
        centre = tuple(int(c) for c in centre)
        patch_label = _array(sample[label_key]) > 0
        patches.append(Patch(index=i, centre=centre, centre_in_spleen=bool(label[centre] > 0),
                             spleen_fraction=float(patch_label.mean()),
                             image=_array(sample[image_key]).astype(np.float32),
                             label=patch_label))
    return patches


def centre_range(shape: Sequence[int], patch_size: Sequence[int]) -> list[tuple[int, int]]:
    """Per axis, the lowest and highest centre a patch can have and still fit in the volume.

    MONAI moves a drawn centre into this range (``correct_crop_centers``), so a patch never
    needs padding; in a volume not much larger than the patch the range is narrow.

    >>> centre_range((50, 42, 36), (32, 32, 32))
    [(16, 34), (16, 26), (16, 20)]
    """
    return [(p // 2, max(p // 2, n - (p - p // 2))) for n, p in zip(shape, patch_size)]


def plot_patch_centres(data: Mapping[str, Any], patches: Sequence[Patch], *,
                       image_key: str = "image", label_key: str = "label") -> Figure:
    """Where the patches were cut: centres and extents over an axial and a coronal view.

    The background is the slice through the spleen's centre; the red dashed outline is the
    spleen projected along the viewing axis (so it covers every centre's depth); the yellow
    dotted box is where centres can lie (:func:`centre_range`). Patches holding spleen are
    red dots, background-only patches cyan crosses.
    """
    if not patches:
        raise ConfigError(None, "no patches to plot")
    img, lab = _array(data[image_key]), _array(data[label_key]) > 0
    aff = _affine(data[image_key])
    spacing = np.ones(3) if aff is None else np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    ci, cj, ck = (int(round(c)) for c in spleen_centre_mm(lab))
    allowed = centre_range(img.shape, patches[0].image.shape)
    fig = NotebookFigure(figsize=(12, 5.4))
    axes = fig.subplots(1, 2)
    views = [("axial", 2, ck, (0, 1)), ("coronal", 1, cj, (0, 2))]
    for ax, (title, axis, index, (a, b)) in zip(axes, views):
        ax.imshow(np.take(img, index, axis=axis).T, cmap="gray", origin="lower",
                  aspect=spacing[b] / spacing[a])
        proj = lab.any(axis=axis)
        if proj.any() and not proj.all():
            ax.contour(proj.T.astype(float), levels=[0.5], colors=LABEL_COLOUR,
                       linestyles="dashed", linewidths=1.0)
        (lo_a, hi_a), (lo_b, hi_b) = allowed[a], allowed[b]
        ax.add_patch(Rectangle((lo_a - 0.5, lo_b - 0.5), hi_a - lo_a + 1, hi_b - lo_b + 1, fill=False,
                               edgecolor="yellow", linestyle=":", linewidth=1.5))
        for p in patches:
            style = SPLEEN_MARKER if p.has_spleen else BACKGROUND_MARKER
            size = p.image.shape
            ax.add_patch(Rectangle((p.centre[a] - size[a] // 2 - 0.5, p.centre[b] - size[b] // 2 - 0.5),
                                   size[a], size[b], fill=False, edgecolor=style["color"],
                                   linewidth=0.8, alpha=0.45))
            ax.plot([p.centre[a]], [p.centre[b]], linestyle="none", markersize=8,
                    markeredgecolor="black", **style)
            ax.annotate(str(p.index), (p.centre[a], p.centre[b]), xytext=(4, 4),
                        textcoords="offset points", color="yellow", fontsize=8)
        ax.set_xlim(-0.5, img.shape[a] - 0.5)
        ax.set_ylim(-0.5, img.shape[b] - 0.5)
        ax.set_title(f"{title} slice {index} (array axis {axis})", fontsize=9)
        ax.set_xlabel(f"array axis {a}", fontsize=8)
        ax.set_ylabel(f"array axis {b}", fontsize=8)
    n_pos = sum(p.has_spleen for p in patches)
    fig.suptitle(f"{len(patches)} patches: {n_pos} hold spleen (red), {len(patches) - n_pos} background "
                 "only (cyan); centres lie in the yellow box", fontsize=10)
    fig.tight_layout()
    return fig


def plot_patches(patches: Sequence[Patch], columns: int = 4) -> Figure:
    """The middle axial slice of each patch, spleen outlined."""
    if not patches:
        raise ConfigError(None, "no patches to plot")
    columns = max(1, min(columns, len(patches)))
    rows = -(-len(patches) // columns)
    fig = NotebookFigure(figsize=(3.0 * columns, 3.5 * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, p in zip(axes, patches):
        k = p.image.shape[2] // 2
        ax.imshow(p.image[:, :, k].T, cmap="gray", origin="lower", vmin=0, vmax=1)
        lab = p.label[:, :, k]
        if lab.any() and not lab.all():
            ax.contour(lab.T.astype(float), levels=[0.5], colors=LABEL_COLOUR, linewidths=1.0)
        ax.set_title(f"#{p.index} centre {p.centre}\nspleen {p.spleen_fraction:.1%} of the patch",
                     fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(patches):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
