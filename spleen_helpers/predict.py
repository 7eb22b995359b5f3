"""Segment the spleen in a whole CT volume and bring the mask back to the image's own grid.

The pipeline is MONAI's spleen tutorial, made safe and measurable:

1. the image goes through :func:`~spleen_helpers.transforms.infer_transforms` (intensity
   window, ``CropForegroundd``, ``Orientationd`` to RAS, ``Spacingd`` to ``cfg.pixdim``);
2. :func:`~spleen_helpers.model.infer_logits` runs sliding-window inference (ROI, window batch
   size, overlap and blending from :class:`~spleen_helpers.config.CourseConfig`);
3. MONAI's ``Invertd`` undoes step 1 on the spleen probability (bilinear, so the mask comes
   back smooth rather than blocky), a threshold at 0.5 gives the mask and, when
   ``cfg.keep_largest_component`` is set, MONAI's ``KeepLargestConnectedComponent`` keeps
   the largest spleen component (a spleen is one organ);
4. the mask is saved as ``uint8`` NIfTI (1 = spleen) with exactly the input's shape and
   affine, atomically (never a partial file under the final name).

A DICOM folder (one series, or a whole study as a PACS exports it) is converted first with
:mod:`spleen_helpers.dicom`: the series to segment is the one
:func:`~spleen_helpers.dicom.choose_ct_series` picks (axial CT, most slices, then the
thinnest), or the one named by ``series``; with ``dicom_seg`` the mask is also written as a
DICOM Segmentation of that series (:mod:`spleen_helpers.dicom_seg`). The model is a
training run's checkpoint, a MONAI bundle folder or ``"pretrained"``
(:mod:`spleen_helpers.pretrained`; a bundle brings the settings of its own inference).
Notebook 04 writes these steps out by hand and checks that they give the same mask as
:func:`predict_volume`.

Example:
    >>> result = predict_file("runs/unet/best_metric_model.pth", "ct.nii.gz", "mask.nii.gz")  # doctest: +SKIP
    >>> print(f"{result.spleen_ml:.1f} mL")                                                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import CourseConfig
from .data import NIFTI_SUFFIXES, open_nifti, voxel_spacing, volume_ml
from .dicom_seg import build_dicom_seg, check_seg_name, save_dicom_seg, series_for_mask
from .errors import ConfigError, DataError
from .fileio import save_nifti_atomic
from .model import infer_logits, resolve_device
from .pretrained import load_model_or_bundle
from .transforms import infer_transforms

if TYPE_CHECKING:
    from .dicom import Notify

__all__ = ["PredictionResult", "load_image_for_inference", "predict_file", "predict_volume", "save_mask"]


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


def _root_cause(exc: BaseException) -> str:
    """The innermost message of a chain (MONAI wraps transform errors in RuntimeError)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_image_for_inference(image_path: str | os.PathLike, cfg: CourseConfig) -> tuple[dict[str, Any], Any]:
    """Run :func:`infer_transforms` on one image; return ``(data, transforms)`` for ``Invertd``.

    Raises DataError naming the file when it cannot be read or preprocessed.
    """
    path = Path(image_path)
    open_nifti(path)
    tf = infer_transforms(cfg)
    try:
        data = tf({"image": str(path)})
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise DataError(path, f"cannot be read or preprocessed ({_root_cause(exc)})") from None
    return data, tf


def predict_volume(model: torch.nn.Module, image_path: str | os.PathLike, cfg: CourseConfig,
                   device: str | torch.device | None = None,
                   keep_largest: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Segment the spleen in one CT NIfTI; return ``(mask, affine)`` in the image's own space.

    ``mask`` is ``uint8`` (1 = spleen) with exactly the file's shape and voxel order;
    ``affine`` is the file's affine. ``keep_largest`` defaults to
    ``cfg.keep_largest_component``.

    >>> from spleen_helpers.model import build_unet                       # doctest: +SKIP
    >>> mask, affine = predict_volume(build_unet(cfg).eval(), "ct.nii.gz", cfg)  # doctest: +SKIP
    """
    from monai.transforms import Invertd, KeepLargestConnectedComponent

    path = Path(image_path)
    header, _ = open_nifti(path)
    if isinstance(device, str):
        device = resolve_device(device)
    device = device or next(model.parameters()).device
    keep = cfg.keep_largest_component if keep_largest is None else keep_largest
    data, tf = load_image_for_inference(path, cfg)
    model.eval()
    with torch.no_grad():
        logits = infer_logits(model, data["image"].unsqueeze(0), cfg, device)
    # Invert the probabilities (bilinear), not the hard mask: the mask comes back smooth. With
    # two classes argmax is "spleen probability > 0.5", and p(background) = 1 - p(spleen)
    # stays so under linear interpolation and zero padding, so one channel is inverted, not
    # two (half the work), and a threshold replaces an argmax over a strided full-size tensor
    # (which took seconds on a 512x512x100 CT).
    data["pred"] = torch.softmax(logits[0].float(), dim=0)[1:2].cpu()
    inverted = Invertd(keys="pred", transform=tf, orig_keys="image", nearest_interp=False,
                       to_tensor=True, device="cpu")(data)["pred"]
    mask = (torch.as_tensor(inverted) > 0.5).to(torch.uint8)
    if keep:
        mask = KeepLargestConnectedComponent(applied_labels=[1])(mask)
    mask_np = np.asarray(torch.as_tensor(mask)[0].cpu().numpy(), dtype=np.uint8)
    if mask_np.shape != tuple(header.shape):  # a wrong result must never pass silently
        raise RuntimeError(f"{path}: the inverted prediction has shape {mask_np.shape}, "
                           f"the image {tuple(header.shape)}")
    return mask_np, np.asarray(header.affine, dtype=np.float64)


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
    from .dicom import convert_series, scan_study, select_series

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
                 fill_missing_uids: bool = False) -> PredictionResult:
    """Segment the spleen in a CT NIfTI file or a DICOM folder and save the mask to ``output``.

    A DICOM folder -- one series or a whole study -- is scanned with
    :func:`~spleen_helpers.dicom.scan_study` (series that are not volumes are skipped, each
    with a line to ``notify``); the series segmented is ``series`` (its series number or
    SeriesInstanceUID) or, by default, the one
    :func:`~spleen_helpers.dicom.choose_ct_series` picks. It is converted with dicom2nifti
    (checks on; a gantry tilt is resampled unless ``tilt_correction=False``) and saved beside
    the mask as ``<output name>_image.nii.gz``, since the mask is aligned with that volume;
    :attr:`PredictionResult.series` and :attr:`~PredictionResult.other_series` say which
    series was used and what else the folder held. With ``dicom_seg`` (a ``.dcm`` path;
    DICOM input only) the mask is also written as a DICOM Segmentation referencing the
    source series (``fill_missing_uids``: see :func:`~spleen_helpers.dicom_seg.write_dicom_seg`).
    ``model_path`` may also be a MONAI bundle folder or ``"pretrained"``. Bad input (missing
    or unsafe model, a file that is no image, no CT series) raises a one-line
    :class:`~spleen_helpers.errors.CourseError`.

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
    mask, affine = predict_volume(model, image, cfg, torch_device, keep_largest)
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
                            series=chosen, other_series=others, dicom_seg=seg_out)
