"""Segment the spleen in a whole CT volume and bring the mask back to the image's own grid.

The pipeline is MONAI's spleen tutorial, made safe and measurable:

1. the image goes through :func:`~spleen_helpers.engine.transforms.infer_transforms` (intensity
   window, ``CropForegroundd``, ``Orientationd`` to RAS, ``Spacingd`` to ``cfg.pixdim``);
2. :func:`~spleen_helpers.engine.model.infer_logits` runs sliding-window inference (ROI, window batch
   size, overlap and blending from :class:`~spleen_helpers.ground.settings.CourseConfig`);
3. the spleen probability goes back to the image's grid (bilinear, so the mask comes back
   smooth rather than blocky), a threshold at 0.5 gives the mask and, when
   ``cfg.keep_largest_component`` is set, MONAI's ``KeepLargestConnectedComponent`` keeps
   the largest spleen component (a spleen is one organ). What MONAI's ``Invertd`` does on
   the whole volume is done once, with MONAI's ``SpatialResample``, on the small block
   around the spleen (:func:`spleen_mask_in_image_space`): the same mask, in a fraction of
   the time;
4. the mask is saved as ``uint8`` NIfTI (1 = spleen) with exactly the input's shape and
   affine, atomically (never a partial file under the final name).

A DICOM folder (one series, or a whole study as a PACS exports it) is converted first with
:mod:`spleen_helpers.data.dicom.series`: the series to segment is the one
:func:`~spleen_helpers.data.dicom.choose.choose_ct_series` picks (axial CT, most slices, then the
thinnest), or the one named by ``series``; with ``dicom_seg`` the mask is also written as a
DICOM Segmentation of that series (:mod:`spleen_helpers.data.seg`). The model is a
training run's checkpoint, a MONAI bundle folder or ``"pretrained"``
(:mod:`spleen_helpers.engine.bundle`; a bundle brings the settings of its own inference).
Notebook 04 writes the tutorial's steps out by hand (``Invertd`` on the whole volume) and
checks that they give the mask of :func:`predict_volume`.

Example:
    >>> result = predict_file("runs/unet/best_metric_model.pth", "ct.nii.gz", "mask.nii.gz")  # doctest: +SKIP
    >>> print(f"{result.spleen_ml:.1f} mL")                                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data.anatomy import LPS_AS_RAS, SpleenSide, spleen_side
from ..data.nifti import NIFTI_SUFFIXES, open_nifti, volume_ml, voxel_spacing
from ..data.seg import build_dicom_seg, check_seg_name, save_dicom_seg, series_for_mask
from ..ground.errors import ConfigError, DataError
from ..ground.files import save_nifti_atomic
from ..ground.settings import CourseConfig
from .model import infer_logits, resolve_device
from .transforms import TurnHeaderd, infer_transforms
from .weights import load_model_or_bundle

if TYPE_CHECKING:
    from ..data.dicom.series import Notify

__all__ = [
    "AnatomyWarning", "PredictionResult", "load_image_for_inference", "spleen_mask_in_image_space",
    "invertd_mask", "window_for", "predict_volume", "CheckedPrediction", "segment_checked",
    "save_mask", "predict_file"
]


#: The two ways a CT can be fed to a network: its header as stored, or turned 180° (TurnHeaderd).
LAYOUTS = ("as stored", "turned")


class AnatomyWarning(UserWarning):
    """A predicted spleen that lies where anatomy does not put it (one line, naming the file)."""


@dataclass(frozen=True)
class PredictionResult:
    """What :func:`predict_file` wrote: the mask, the image it is aligned with, the spleen volume."""

    input: Path
    output: Path
    image: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: np.ndarray = field(repr=False)
    spleen_voxels: int = 0
    spleen_ml: float = 0.0
    seconds: float = 0.0
    device: str = "cpu"
    series: str = ""                        # the DICOM series segmented (its one-line summary)
    other_series: tuple[str, ...] = ()      # the folder's other series, and what they are
    dicom_seg: Path | None = None
    layout: str = "as stored"               # how the CT was fed to the network (LAYOUTS)
    side: str = ""                          # where the predicted spleen lies (SpleenSide.line)


def _root_cause(exc: BaseException) -> str:
    """The innermost message of a chain (MONAI wraps transform errors in RuntimeError)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _foreground_above(cfg: CourseConfig) -> float | None:
    """The HU above which ``CropForegroundd`` (``scaled > 0``, after ``ScaleIntensityRanged``) keeps
    a voxel, so the crop can come first; None where the window maps no value cleanly above 0."""
    if cfg.b_max <= cfg.b_min or cfg.b_max <= 0:
        return None
    if cfg.b_min > 0 and cfg.clip:
        return -math.inf
    return cfg.a_min + (0.0 - cfg.b_min) * (cfg.a_max - cfg.a_min) / (cfg.b_max - cfg.b_min)


def load_image_for_inference(image_path: str | os.PathLike, cfg: CourseConfig,
                             device: str | torch.device | None = None, turned: bool = False) -> dict[str, Any]:
    """The image as :func:`infer_transforms` preprocesses it, done the fast way; returns ``{"image": ...}``.

    The same MONAI steps (``CropForegroundd``, ``ScaleIntensityRanged``, ``Orientationd``,
    ``Spacingd``) on the same values, with three changes that only cost less:

    * the file is read once with nibabel (:func:`~spleen_helpers.data.nifti.open_nifti`, which also
      checks the gzip stream to its end) and becomes a ``float32`` tensor on ``device``
      (MONAI's ``LoadImaged`` took about twice as long on a 512 × 512 × 100 CT);
    * in the tutorial order the crop to the body comes before the intensity window (a voxel
      is foreground when its windowed value is above 0, i.e. when its HU is above the value
      :func:`_foreground_above` gives), found on the file's own voxels, so only the cropped
      block is converted to ``float32`` and windowed;
    * ``Spacingd`` resamples in ``float32`` (the pipeline's default is ``float64``).

    The image the network sees differs from the pipeline's in the last bits of a float
    (tested). ``turned`` reads the file with its header turned 180° (:class:`TurnHeaderd`,
    as ``infer_transforms(cfg, turned=True)`` does). Raises DataError naming the file when
    it cannot be read or preprocessed.
    """
    from monai.data import MetaTensor
    from monai.transforms import SpatialCropd
    from monai.transforms.utils import generate_spatial_bounding_box

    path = Path(image_path)
    img, voxels = open_nifti(path, read_data=True)
    steps = {type(t).__name__: t for t in infer_transforms(cfg, resample_dtype=torch.float32).transforms}
    scale, orient, spacing = steps["ScaleIntensityRanged"], steps["Orientationd"], steps["Spacingd"]
    voxels = np.asarray(voxels)
    image = MetaTensor(torch.as_tensor(voxels)[None], affine=torch.as_tensor(np.asarray(img.affine, np.float64)),
                       meta={"filename_or_obj": str(path)})
    data: dict[str, Any] = {"image": image}
    if turned:
        data = TurnHeaderd("image")(data)
    try:
        threshold = _foreground_above(cfg)
        if cfg.transform_order == "bundle":
            order = [orient, spacing, scale]
        elif threshold is None:
            order = [scale, steps["CropForegroundd"], orient, spacing]   # MONAI's own order, exactly
        else:
            # The body's box is found on the file's own voxels (MONAI's bounding box is much
            # faster on a numpy array than on a tensor: BENCHMARKS.md §3), and only the block
            # inside it becomes float32.
            inside = voxels > threshold
            if inside.any():
                first, end = generate_spatial_bounding_box(inside[None], select_fn=lambda v: v)
                data = SpatialCropd(keys="image", roi_start=first, roi_end=end)(data)
            order = [scale, orient, spacing]
        data["image"] = data["image"].to(device or "cpu", torch.float32)
        for step in order:
            data = step(data)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DataError(path, f"cannot be read or preprocessed ({_root_cause(exc)})") from None
    return data


def _crop_box(image: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """First and last voxel of the original image that ``CropForegroundd`` kept (all of it without one)."""
    from monai.utils import TraceKeys

    lo, hi = np.zeros(3, int), np.asarray(shape[:3], int) - 1
    for op in getattr(image, "applied_operations", []):
        if op.get(TraceKeys.CLASS_NAME) in ("CropForeground", "SpatialCrop"):
            cropped = np.asarray(op[TraceKeys.EXTRA_INFO]["cropped"], int).reshape(3, 2)
            lo, hi = lo + cropped[:, 0], hi - cropped[:, 1]
    return lo, hi


def spleen_mask_in_image_space(spleen: torch.Tensor, image: Any, shape: tuple[int, ...],
                               affine: np.ndarray, keep_largest: bool = False) -> np.ndarray:
    """The mask ``p(spleen) > 0.5`` on the original image's grid, from the network-grid probability.

    What ``Invertd`` on the probability, a threshold and ``KeepLargestConnectedComponent``
    give, computed in one resampling of the smallest block that can hold spleen: the voxels
    where ``spleen > 0.5``, one voxel more on each side (a linear interpolation of values
    that are all <= 0.5 stays <= 0.5), taken straight from the network's grid to the
    original one with MONAI's ``SpatialResample`` (reorientation, resampling and the undone
    crop are one affine). Everything outside that block is background without being
    computed. With ``keep_largest`` the block is the one around the largest component on the
    network's grid (MONAI's ``get_largest_connected_component_mask``), and the components are
    taken again on the original grid inside it. The full-size inversion that ``Invertd``
    does, and the connected components of a whole CT, took most of a prediction's time
    (BENCHMARKS.md §3); they agree with this up to the rounding of voxels that sit
    exactly on 0.5 (and, with ``keep_largest``, two components that touch only on the finer
    grid, which the tests bound by a Dice of 0.999).

    ``spleen`` is ``(X, Y, Z)`` on the network's grid (any device), ``image`` the
    preprocessed MetaTensor (its affine and the crop it records), ``shape`` and ``affine``
    the original image's. Returns ``uint8`` of ``shape``.

    >>> import torch
    >>> from monai.data import MetaTensor
    >>> grid = MetaTensor(torch.zeros(1, 8, 8, 8), affine=torch.diag(torch.tensor([2.0, 2, 2, 1])))
    >>> p = torch.zeros(8, 8, 8); p[2:4, 2:4, 2:4] = 1.0        # spleen at 4 and 6 mm (corners: 0.75³ < 0.5)
    >>> image_affine = np.eye(4); image_affine[:3, 3] = 0.5      # 1 mm voxels at 0.5, 1.5, ... mm
    >>> mask = spleen_mask_in_image_space(p, grid, (16, 16, 16), image_affine)
    >>> mask.shape, int(mask.sum()), [int(i) for i in np.argwhere(mask).min(0)]
    ((16, 16, 16), 56, [3, 3, 3])
    """
    from monai.data import MetaTensor
    from monai.transforms import KeepLargestConnectedComponent, SpatialResample
    from monai.transforms.utils import (
        generate_spatial_bounding_box,
        get_largest_connected_component_mask,
    )

    shape = tuple(int(s) for s in shape[:3])
    mask = np.zeros(shape, np.uint8)
    inside = spleen > 0.5
    if not bool(inside.any()):
        return mask
    if keep_largest:
        # Only the largest component can become the mask: its block is enough, and a stray
        # voxel across the body no longer stretches the block to the body's size.
        inside = get_largest_connected_component_mask(inside[None])[0]
    size = np.asarray(spleen.shape)
    first, end = generate_spatial_bounding_box(inside[None].cpu().numpy(), select_fn=lambda v: v)
    lo, hi = np.asarray(first) - 1, np.asarray(end)   # one voxel more on each side (end is exclusive)
    start, stop = np.maximum(lo, 0), np.minimum(hi, size - 1)
    net_affine = np.asarray(image.affine, np.float64)
    shift = np.eye(4)
    shift[:3, 3] = start
    values = spleen.as_subclass(torch.Tensor)  # a plain tensor: the block gets an affine of its own
    block = MetaTensor(values[start[0]:stop[0] + 1, start[1]:stop[1] + 1, start[2]:stop[2] + 1][None].float(),
                       affine=torch.as_tensor(net_affine @ shift))
    # the original voxels whose position on the network grid lies within (lo, hi)
    corners = np.array([[c[0], c[1], c[2], 1.0] for c in np.array(np.meshgrid(*zip(lo, hi))).reshape(3, -1).T])
    to_image = np.linalg.inv(np.asarray(affine, np.float64)) @ net_affine
    mapped = (to_image @ corners.T)[:3]
    crop_lo, crop_hi = _crop_box(image, shape)
    first = np.maximum(np.floor(mapped.min(1)).astype(int), crop_lo)
    last = np.minimum(np.ceil(mapped.max(1)).astype(int), crop_hi)
    if np.any(last < first):
        return mask
    shift[:3, 3] = first
    resample = SpatialResample(mode="bilinear", padding_mode="border", align_corners=False, dtype=torch.float64)
    prob = resample(block, dst_affine=torch.as_tensor(np.asarray(affine, np.float64) @ shift),
                    spatial_size=tuple(int(n) for n in last - first + 1))
    piece = (torch.as_tensor(prob) > 0.5).to(torch.uint8)
    if keep_largest:
        piece = KeepLargestConnectedComponent(applied_labels=[1])(piece)
    region = tuple(slice(int(a), int(b) + 1) for a, b in zip(first, last))
    mask[region] = np.asarray(torch.as_tensor(piece)[0].cpu().numpy(), np.uint8)
    return mask


def invertd_mask(model: torch.nn.Module, image_path: str | os.PathLike, cfg: CourseConfig,
                 device: str | torch.device = "cpu", keep_largest: bool | None = None,
                 turned: bool = False) -> np.ndarray:
    """The mask the tutorial's way: :func:`infer_transforms`, sliding window, ``Invertd`` of the
    spleen probability onto the whole original grid, a threshold, ``KeepLargestConnectedComponent``
    on the whole volume -- the steps notebook 04 writes out, kept here as the reference that
    :func:`predict_volume`'s faster way is tested and measured against.

    >>> invertd_mask(model, "ct.nii.gz", cfg)   # doctest: +SKIP
    """
    from monai.transforms import Invertd, KeepLargestConnectedComponent

    device = resolve_device(device) if isinstance(device, str) else device
    keep = cfg.keep_largest_component if keep_largest is None else keep_largest
    tf = infer_transforms(cfg, turned=turned)
    data = tf({"image": str(image_path)})
    with torch.no_grad():
        logits = infer_logits(model.eval(), data["image"].unsqueeze(0), cfg, device)
    data["pred"] = torch.softmax(logits[0].float(), dim=0)[1:2].cpu()
    inverted = Invertd(keys="pred", transform=tf, orig_keys="image", nearest_interp=False,
                       to_tensor=True, device="cpu")(data)["pred"]
    mask = (torch.as_tensor(inverted) > 0.5).to(torch.uint8)
    if keep:
        mask = KeepLargestConnectedComponent(applied_labels=[1])(mask)
    return np.asarray(torch.as_tensor(mask)[0].numpy(), np.uint8)


def window_for(shape: tuple[int, ...], cfg: CourseConfig) -> tuple[int, int, int]:
    """The sliding window for an image of ``shape``: ``cfg.roi_size``, but no larger than the
    image rounded up to :attr:`CourseConfig.size_multiple` along any axis.

    ``sliding_window_inference`` pads an image smaller than the window up to the window, and
    the network then spends its time on padding: a 147 × 109 × 125 CT in a 160³ window is
    half padding (BENCHMARKS.md §3). A smaller window that still holds the whole
    image along that axis sees the same voxels.

    >>> window_for((147, 109, 125), CourseConfig())
    (160, 112, 128)
    >>> window_for((300, 300, 40), CourseConfig())
    (160, 160, 48)
    """
    k = cfg.size_multiple
    return tuple(min(int(r), -(-int(n) // k) * k) for r, n in zip(cfg.roi_size, shape))  # type: ignore[return-value]


def predict_volume(model: torch.nn.Module, image_path: str | os.PathLike, cfg: CourseConfig,
                   device: str | torch.device | None = None,
                   keep_largest: bool | None = None, turned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Segment the spleen in one CT NIfTI; return ``(mask, affine)`` in the image's own space.

    ``mask`` is ``uint8`` (1 = spleen) with exactly the file's shape and voxel order;
    ``affine`` is the file's affine. ``keep_largest`` defaults to
    ``cfg.keep_largest_component``. Preprocessing, the network (in a window no larger than
    the image, :func:`window_for`) and the way back to the image's grid
    (:func:`spleen_mask_in_image_space`) run on ``device``. ``turned`` feeds the network the
    image with its header turned 180° (:func:`load_image_for_inference`); the mask still
    comes back on the file's own voxels, with the file's own affine.

    >>> from spleen_helpers.engine.model import build_unet  # doctest: +SKIP
    >>> mask, affine = predict_volume(build_unet(cfg).eval(), "ct.nii.gz", cfg)  # doctest: +SKIP
    """
    path = Path(image_path)
    header, _ = open_nifti(path)
    if isinstance(device, str):
        device = resolve_device(device)
    device = device or next(model.parameters()).device
    keep = cfg.keep_largest_component if keep_largest is None else keep_largest
    data = load_image_for_inference(path, cfg, device, turned)
    grid = LPS_AS_RAS @ np.asarray(header.affine, np.float64) if turned else header.affine
    model.eval()
    with torch.no_grad():
        window = window_for(tuple(data["image"].shape[1:]), cfg)
        logits = infer_logits(model, data["image"].unsqueeze(0), cfg.replace(roi_size=window), device)
        # With two classes argmax is "spleen probability > 0.5": one channel is enough.
        spleen = torch.softmax(logits[0].float(), dim=0)[1]
        mask = spleen_mask_in_image_space(spleen, data["image"], tuple(header.shape), grid, keep)
    return mask, np.asarray(header.affine, dtype=np.float64)


@dataclass(frozen=True)
class CheckedPrediction:
    """A mask from :func:`segment_checked`: the layout it was predicted in, where its spleen lies, why."""

    mask: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    layout: str
    side: SpleenSide
    reason: str


def _on_the_right(side: SpleenSide) -> bool:
    return side.wrong_side and side.left_mm is not None and side.left_mm < 0


def segment_checked(model: torch.nn.Module, image_path: str | os.PathLike, cfg: CourseConfig,
                    device: str | torch.device | None = None, keep_largest: bool | None = None,
                    lps_as_ras: bool = False, log: Any = print) -> CheckedPrediction:
    """:func:`predict_volume`, then anatomy as the judge (:func:`~spleen_helpers.data.anatomy.spleen_side`).

    For MONAI's pretrained bundle (``cfg.profile == "bundle"``), whose training data is
    reported to carry LPS headers read as RAS: when the spleen of the first result lies on the
    patient's right, the CT is segmented again with its header turned 180° (the layout MONAI's
    deploy SDK feeds these bundles), and the result whose spleen lies where anatomy puts it is
    kept, with one line to ``log`` saying which layout and why; when neither or both look
    right, the first result is kept, with an :class:`AnatomyWarning`. Nothing is turned on an
    assumption. For any other model a spleen on the wrong side is an :class:`AnatomyWarning`.
    ``lps_as_ras``: the file's header is known to hold DICOM's LPS numbers as if they were RAS;
    it is read turned back, and the side is judged on the corrected header. The mask always
    lies on the file's own voxels (``affine`` is the file's).

    >>> checked = segment_checked(model, "ct.nii.gz", cfg)   # doctest: +SKIP
    >>> checked.layout, checked.side.verdict                  # doctest: +SKIP
    ('as stored', 'as expected')
    """
    import warnings

    path = Path(image_path)
    first = LAYOUTS[int(lps_as_ras)]
    mask, affine = predict_volume(model, path, cfg, device, keep_largest, turned=lps_as_ras)
    ct = open_nifti(path, read_data=True)[1]
    truth = LPS_AS_RAS @ affine if lps_as_ras else affine     # the header anatomy is judged on
    side = spleen_side(ct, mask, truth)
    checked = CheckedPrediction(mask, affine, first, side, f"{first}: {side.line()}")
    if cfg.profile == "bundle" and _on_the_right(side):
        other = LAYOUTS[1 - int(lps_as_ras)]
        mask2, _ = predict_volume(model, path, cfg, device, keep_largest, turned=not lps_as_ras)
        side2 = spleen_side(ct, mask2, truth)
        if side2.verdict == "as expected":
            checked = CheckedPrediction(mask2, affine, other, side2,
                                        f"{other}: fed {first}, the bundle put the spleen on the patient's "
                                        f"right; fed {other}, {side2.line()}")
            log(f"{path.name}: layout {checked.reason}")
            return checked
        checked = CheckedPrediction(mask, affine, first, side,
                                    f"{first}: neither layout puts the spleen on the patient's left "
                                    f"({other}: {side2.verdict or 'no verdict'}); kept inference.json's result")
    if side.wrong_side:
        where = "on the patient's right" if side.left_mm is not None and side.left_mm < 0 else "in front"
        hint = "" if lps_as_ras else " (if its header is known to be LPS written as RAS, read it turned: --lps-as-ras)"
        warnings.warn(f"{path}: spleen predicted {where}: {side.line()}; the model or the input "
                      f"may be turned or mirrored{hint} -- see README, Troubleshooting",
                      AnatomyWarning, stacklevel=2)
    return checked


def save_mask(mask: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``mask`` as ``uint8`` NIfTI with ``affine`` (sform and qform), atomically.

    >>> import tempfile, nibabel as nib
    >>> out = save_mask(np.ones((2, 3, 4), np.uint8), np.eye(4), Path(tempfile.mkdtemp()) / "m.nii.gz")
    >>> nib.load(out).shape, nib.load(out).get_data_dtype()
    ((2, 3, 4), dtype('uint8'))
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise DataError(path, "output name must end in .nii.gz or .nii")
    return save_nifti_atomic(np.asarray(mask, dtype=np.uint8), np.asarray(affine, dtype=np.float64),
                             path, description="spleen mask (1 = spleen)")


def _dicom_to_nifti(folder: Path, out: Path, series_key: str | None, tilt_correction: bool,
                    notify: Notify | None) -> tuple[Path, str, tuple[str, ...]]:
    """Convert the chosen series of a DICOM folder; return the NIfTI, its summary and the others'."""
    from ..data.dicom.choose import select_series
    from ..data.dicom.convert import convert_series
    from ..data.dicom.scan import scan_study

    scan = scan_study(folder, notify=notify)
    chosen = select_series(scan, series_key)
    others = tuple([f"{s.summary()}" for s in scan.series if s is not chosen]
                   + [f"{s.label()}: skipped ({s.reason})" for s in scan.skipped])
    path = convert_series(chosen, out, tilt_correction=tilt_correction, notify=notify)
    return path, chosen.summary(), others


def predict_file(model_path: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike,
                 cfg: CourseConfig | None = None, device: str = "auto",
                 keep_largest: bool | None = None, *, series: str | int | None = None,
                 tilt_correction: bool = True, notify: Notify | None = None,
                 dicom_seg: str | os.PathLike | None = None,
                 fill_missing_uids: bool = False, lps_as_ras: bool = False) -> PredictionResult:
    """Segment the spleen in a CT NIfTI file or a DICOM folder and save the mask to ``output``.

    A DICOM folder -- one series or a whole study -- is scanned with
    :func:`~spleen_helpers.data.dicom.scan.scan_study` (series that are not volumes are skipped, each
    with a line to ``notify``); the series segmented is ``series`` (its series number or
    SeriesInstanceUID) or, by default, the one
    :func:`~spleen_helpers.data.dicom.choose.choose_ct_series` picks. It is converted with dicom2nifti
    (checks on; a gantry tilt is resampled unless ``tilt_correction=False``) and saved beside
    the mask as ``<output name>_image.nii.gz``, since the mask is aligned with that volume;
    :attr:`PredictionResult.series` and :attr:`~PredictionResult.other_series` say which
    series was used and what else the folder held. With ``dicom_seg`` (a ``.dcm`` path;
    DICOM input only) the mask is also written as a DICOM Segmentation referencing the
    source series (``fill_missing_uids``: see :func:`~spleen_helpers.data.seg.write_dicom_seg`).
    The mask is checked by anatomy (:func:`segment_checked`: a spleen on the wrong side is an
    :class:`AnatomyWarning`; the pretrained bundle may be run turned); ``lps_as_ras`` reads a
    NIfTI whose header is known to hold DICOM's LPS numbers as if they were RAS with that
    header turned back.
    ``model_path`` may also be a MONAI bundle folder or ``"pretrained"``. Bad input (missing
    or unsafe model, a file that is no image, no CT series) raises a one-line
    :class:`~spleen_helpers.ground.errors.CourseError`.

    >>> r = predict_file("runs/unet/best_metric_model.pth", "ct.nii.gz", "mask.nii.gz")  # doctest: +SKIP
    >>> print(f"{r.spleen_ml:.1f} mL")                                               # doctest: +SKIP
    """
    t0 = time.perf_counter()
    src, out = Path(input), Path(output)
    if not out.name.endswith(NIFTI_SUFFIXES):
        raise DataError(out, "output name must end in .nii.gz or .nii")
    seg_out = None if dicom_seg is None else check_seg_name(dicom_seg)
    if seg_out is not None and src.exists() and not src.is_dir():
        raise DataError(src, "a DICOM SEG needs DICOM input: a NIfTI file has no DICOM slices to "
                             "reference (give the DICOM folder, or leave out --dicom-seg)")
    torch_device = resolve_device(device)
    model, cfg = load_model_or_bundle(model_path, cfg, torch_device)
    if not src.exists():
        raise DataError(src, "input does not exist (give a CT .nii/.nii.gz file or a DICOM folder)")
    image, chosen, others = src, "", ()
    if src.is_dir():
        stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.name[: -len(".nii")]
        image, chosen, others = _dicom_to_nifti(src, out.with_name(f"{stem}_image.nii.gz"),
                                                None if series is None else str(series),
                                                tilt_correction, notify)
    elif not src.name.endswith(NIFTI_SUFFIXES):
        raise DataError(src, "is neither a NIfTI file (.nii/.nii.gz) nor a DICOM folder")
    elif series is not None:
        raise ConfigError(src, "a series can only be chosen in a DICOM folder, not in a NIfTI file")
    if lps_as_ras and src.is_dir():
        raise ConfigError(src, "--lps-as-ras is for a NIfTI file: the course converts DICOM with its true geometry")
    checked = segment_checked(model, image, cfg, torch_device, keep_largest, lps_as_ras=lps_as_ras,
                              log=notify or (lambda _line: None))
    mask, affine = checked.mask, checked.affine
    seg = None
    if seg_out is not None:  # built before anything is saved: a refused SEG leaves no mask behind
        seg = build_dicom_seg(mask, affine, series_for_mask(src, affine, mask.shape),
                              fill_missing_uids=fill_missing_uids)
    save_mask(mask, affine, out)
    if seg is not None and seg_out is not None:
        save_dicom_seg(seg, seg_out)
    spacing = voxel_spacing(affine)
    voxels = int(mask.sum())
    return PredictionResult(input=src, output=out, image=image,
                            shape=tuple(int(s) for s in mask.shape),  # type: ignore[arg-type]
                            spacing=spacing, affine=affine, spleen_voxels=voxels,
                            spleen_ml=volume_ml(voxels, spacing),
                            seconds=time.perf_counter() - t0, device=str(torch_device),
                            series=chosen, other_series=others, dicom_seg=seg_out,
                            layout=checked.layout, side=checked.side.line())
