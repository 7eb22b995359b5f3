"""Whole-volume inference, predictions in the original image space, and per-case metrics.

The pipeline is MONAI's spleen tutorial, made safe and measurable:

1. the image goes through :func:`~spleen_helpers.transforms.infer_transforms` (intensity
   window, ``CropForegroundd``, ``Orientationd`` to RAS, ``Spacingd`` to ``cfg.pixdim``);
2. :func:`~spleen_helpers.model.infer_logits` runs sliding-window inference (ROI, window batch
   size, overlap and blending from :class:`~spleen_helpers.config.CourseConfig`);
3. MONAI's ``Invertd`` undoes step 1 on the softmax probabilities (bilinear, so the mask
   comes back smooth rather than blocky), then ``argmax`` gives the mask and, when
   ``cfg.keep_largest_component`` is set, MONAI's ``KeepLargestConnectedComponent`` keeps
   the largest spleen component (a spleen is one organ);
4. the mask is saved as ``uint8`` NIfTI (1 = spleen) with exactly the input's shape and
   affine, atomically (never a partial file under the final name).

**Where the metrics are computed.** In the *original image space*: the prediction is
brought back to the input's voxel grid (step 3) and compared with the reference label as
it was annotated, with the voxel spacing read from the image's affine. Resampling the
reference instead would change it (nearest-neighbour resampling adds or removes boundary
voxels), so the numbers would describe a different mask than the one a radiologist drew,
and volumes in mL would depend on ``cfg.pixdim``. Surface distances use the true,
anisotropic spacing (MONAI's ``spacing=`` argument), so they are millimetres.

**Empty masks.** Dice and IoU follow MONAI's ``ignore_empty=False`` rule: both empty → 1,
one empty → 0. Surface distances (HD95, ASD) are undefined when either mask is empty:
they are reported as ``nan`` and the case's ``note`` says why; summaries average the
finite values and count the others.

Example:
    >>> import numpy as np
    >>> ref = np.zeros((20, 20, 20), np.uint8); ref[5:15, 5:15, 5:15] = 1
    >>> pred = np.roll(ref, 2, axis=0)                       # shifted by 2 voxels along x
    >>> m = case_metrics(pred, ref, spacing=(2.0, 1.0, 1.0))
    >>> round(m.dice, 3), round(m.iou, 3), m.ref_ml
    (0.8, 0.667, 2.0)
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from nibabel.filebasedimages import ImageFileError

from .config import CourseConfig, config_for
from .data import load_datalist, split_datalist, validate_case
from .errors import ConfigError, DataError
from .fileio import atomic_path, save_nifti_atomic, write_json_atomic
from .model import infer_logits, resolve_device
from .train import BEST_MODEL_NAME, load_model, train
from .transforms import infer_transforms

__all__ = [
    "CaseMetrics",
    "CaseResult",
    "EvaluationReport",
    "MetricSummary",
    "PredictionResult",
    "METRICS",
    "METRICS_CSV",
    "SUMMARY_JSON",
    "SUMMARY_CSV",
    "MASKS_DIR",
    "case_metrics",
    "evaluate_cases",
    "find_or_train_model",
    "load_image_for_inference",
    "predict_file",
    "predict_volume",
    "save_mask",
]

METRICS_CSV = "metrics.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
MASKS_DIR = "masks"

#: Metric name → (column title, higher is better, decimals shown).
METRICS: dict[str, tuple[str, bool, int]] = {
    "dice": ("Dice", True, 3),
    "iou": ("IoU", True, 3),
    "hd95_mm": ("HD95 mm", False, 1),
    "asd_mm": ("ASD mm", False, 2),
    "pred_ml": ("pred mL", True, 1),
    "ref_ml": ("ref mL", True, 1),
}

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


# ------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class CaseMetrics:
    """Agreement between one predicted and one reference spleen mask (original image space).

    ``hd95_mm`` is MONAI's symmetric 95th-percentile Hausdorff distance, ``asd_mm`` its
    symmetric average surface distance, both in mm; ``nan`` when either mask is empty
    (``note`` says so). Volumes are in mL (1 mL = 1000 mm³).
    """

    dice: float
    iou: float
    hd95_mm: float
    asd_mm: float
    pred_ml: float
    ref_ml: float
    pred_voxels: int
    ref_voxels: int
    note: str = ""

    @property
    def volume_error_ml(self) -> float:
        """Predicted minus reference volume in mL (positive: over-segmentation)."""
        return self.pred_ml - self.ref_ml


@dataclass(frozen=True)
class CaseResult:
    """One evaluated case: its files, the saved prediction, the metrics and timing."""

    name: str
    image: Path
    label: Path
    prediction: Path | None
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    metrics: CaseMetrics
    seconds: float

    def row(self) -> dict[str, Any]:
        """Flat dict for the CSV: case, metrics, note, seconds and file paths."""
        m = asdict(self.metrics)
        note = m.pop("note")
        return {"case": self.name, **m, "volume_error_ml": self.metrics.volume_error_ml,
                "seconds": self.seconds, "note": note, "image": str(self.image),
                "label": str(self.label),
                "prediction": "" if self.prediction is None else str(self.prediction)}


@dataclass(frozen=True)
class MetricSummary:
    """Mean ± sample standard deviation of one metric over the cases where it is finite."""

    name: str
    mean: float
    sd: float
    n: int
    n_nan: int

    def format(self, decimals: int = 3) -> str:
        """``0.912 ± 0.031`` (``nan`` when no case has a value; no ± for a single case)."""
        if self.n == 0:
            return "nan"
        if self.n == 1 or math.isnan(self.sd):
            return f"{self.mean:.{decimals}f}"
        return f"{self.mean:.{decimals}f} ± {self.sd:.{decimals}f}"


def _summarise(name: str, values: Sequence[float]) -> MetricSummary:
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    mean = float(finite.mean()) if n else float("nan")
    sd = float(finite.std(ddof=1)) if n > 1 else float("nan")
    return MetricSummary(name=name, mean=mean, sd=sd, n=n, n_nan=int(arr.size - n))


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate_cases` produced: per-case results, files and the summary."""

    cases: list[CaseResult]
    out_dir: Path
    model_path: Path
    config: CourseConfig
    device: str
    csv_path: Path
    summary_json: Path
    summary_csv: Path
    masks_dir: Path | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, MetricSummary]:
        """Mean ± sd of every metric in :data:`METRICS` (finite values only)."""
        return {name: _summarise(name, [getattr(c.metrics, name) for c in self.cases])
                for name in METRICS}

    def _ranked(self, metric: str) -> list[CaseResult]:
        if metric not in METRICS:
            raise ConfigError(None, f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
        scored = [c for c in self.cases if math.isfinite(getattr(c.metrics, metric))]
        if not scored:
            raise DataError(self.out_dir, f"no case has a finite {metric} to rank by")
        higher_better = METRICS[metric][1]
        return sorted(scored, key=lambda c: getattr(c.metrics, metric), reverse=higher_better)

    def best(self, metric: str = "dice") -> CaseResult:
        """The case with the best finite value of ``metric`` (highest Dice, lowest HD95...)."""
        return self._ranked(metric)[0]

    def worst(self, metric: str = "dice") -> CaseResult:
        """The case with the worst finite value of ``metric``."""
        return self._ranked(metric)[-1]

    def _table_rows(self) -> tuple[list[str], list[list[str]], list[str]]:
        header = ["case"] + [title for title, _, _ in METRICS.values()] + ["note"]
        rows = [[c.name] + [f"{getattr(c.metrics, k):.{d}f}" for k, (_, _, d) in METRICS.items()]
                + [c.metrics.note] for c in self.cases]
        summary = self.summary()
        footer = [f"mean ± sd (n={len(self.cases)})"] + \
            [summary[k].format(d) for k, (_, _, d) in METRICS.items()] + [""]
        return header, rows, footer

    def table(self) -> str:
        """The per-case metrics and the mean ± sd row as a plain-text table."""
        header, rows, footer = self._table_rows()
        cols = list(zip(*([header] + rows + [footer])))
        widths = [max(len(str(v)) for v in col) for col in cols]

        def line(values: list[str]) -> str:
            cells = [str(v).ljust(w) if i in (0, len(values) - 1) else str(v).rjust(w)
                     for i, (v, w) in enumerate(zip(values, widths))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(header))
        return "\n".join([line(header), rule] + [line(r) for r in rows] + [rule, line(footer)])

    def to_html(self) -> str:
        """The same table as HTML (for ``IPython.display.HTML`` in a notebook)."""
        from html import escape

        header, rows, footer = self._table_rows()

        def tr(values: list[str], tag: str = "td") -> str:
            return "<tr>" + "".join(f"<{tag}>{escape(str(v))}</{tag}>" for v in values) + "</tr>"

        body = "".join(tr(r) for r in rows)
        return (f"<table class='spleen-metrics'><thead>{tr(header, 'th')}</thead>"
                f"<tbody>{body}</tbody><tfoot>{tr(footer, 'th')}</tfoot></table>")

    def _repr_html_(self) -> str:
        return self.to_html()


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


# ------------------------------------------------------------------------------ metrics
def _binary(mask: Any, what: str) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    while arr.ndim > 3 and arr.shape[0] == 1:  # drop batch / channel axes of size 1
        arr = arr[0]
    if arr.ndim != 3:
        raise DataError(None, f"{what} must be a 3-D mask, got shape {tuple(arr.shape)}")
    return arr > 0


def case_metrics(pred: Any, ref: Any, spacing: Sequence[float]) -> CaseMetrics:
    """Dice, IoU, HD95 and ASD (mm) and both volumes (mL) of two binary 3-D masks.

    ``pred`` and ``ref`` are arrays or tensors of the same shape (nonzero = spleen);
    ``spacing`` is the voxel size in mm along the arrays' three axes. All metrics come
    from ``monai.metrics``; surface distances are symmetric. See the module docstring for
    empty masks.

    >>> import numpy as np
    >>> ref = np.zeros((9, 9, 9), np.uint8); ref[4, 4, 2] = 1
    >>> pred = np.zeros_like(ref); pred[4, 4, 6] = 1          # 4 voxels apart along z
    >>> m = case_metrics(pred, ref, spacing=(1.0, 1.0, 2.5))
    >>> m.dice, m.hd95_mm, m.asd_mm
    (0.0, 10.0, 10.0)
    """
    from monai.metrics import (compute_average_surface_distance, compute_dice,
                               compute_hausdorff_distance, compute_iou)

    p, r = _binary(pred, "prediction"), _binary(ref, "reference")
    if p.shape != r.shape:
        raise DataError(None, f"prediction shape {p.shape} does not match reference shape {r.shape}")
    spacing_mm = tuple(float(s) for s in spacing)
    if len(spacing_mm) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_mm):
        raise DataError(None, f"spacing must be three positive sizes in mm, got {tuple(spacing)}")
    # (batch, channel, x, y, z) with the spleen as the only channel
    yp = torch.from_numpy(p)[None, None].float()
    yr = torch.from_numpy(r)[None, None].float()
    dice = float(compute_dice(yp, yr, include_background=True, ignore_empty=False).item())
    iou = float(compute_iou(yp, yr, include_background=True, ignore_empty=False).item())
    pv, rv = int(p.sum()), int(r.sum())
    note = ""
    if pv and rv:
        with warnings.catch_warnings():
            # MONAI's own internal call of a deprecated argument; nothing the user can change
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
            hd95 = float(compute_hausdorff_distance(yp, yr, include_background=True, percentile=95,
                                                    spacing=spacing_mm).item())
            asd = float(compute_average_surface_distance(yp, yr, include_background=True,
                                                         symmetric=True, spacing=spacing_mm).item())
    else:
        hd95 = asd = float("nan")
        which = ("prediction and reference are" if not (pv or rv)
                 else "prediction is" if not pv else "reference is")
        note = f"{which} empty: HD95 and ASD undefined (nan)"
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return CaseMetrics(dice=dice, iou=iou, hd95_mm=hd95, asd_mm=asd, pred_ml=pv * voxel_ml,
                       ref_ml=rv * voxel_ml, pred_voxels=pv, ref_voxels=rv, note=note)


# ---------------------------------------------------------------------------- inference
def _root_cause(exc: BaseException) -> str:
    """The innermost message of a chain (MONAI wraps transform errors in RuntimeError)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _check_nifti(path: Path) -> nib.Nifti1Image:
    """Open a NIfTI header; DataError naming the file when it is missing, not NIfTI, or not 3-D."""
    if not path.exists():
        raise DataError(path, "file does not exist")
    if path.is_dir():
        raise DataError(path, "is a folder; expected a NIfTI file (.nii or .nii.gz)")
    try:
        img = nib.load(path)
    except (ImageFileError, OSError, EOFError, ValueError) as exc:
        reason = str(exc).replace(str(path), "").strip(' "') or type(exc).__name__
        if "Cannot work out file type" in reason:
            reason = "not a NIfTI image (.nii/.nii.gz), or truncated"
        raise DataError(path, f"is not a readable NIfTI image ({reason})") from None
    if len(img.shape) != 3:
        raise DataError(path, f"is {len(img.shape)}-D with shape {tuple(img.shape)}; expected a 3-D CT volume")
    return img  # type: ignore[return-value]


def load_image_for_inference(image_path: str | os.PathLike, cfg: CourseConfig) -> tuple[dict[str, Any], Any]:
    """Run :func:`infer_transforms` on one image; return ``(data, transforms)`` for ``Invertd``.

    Raises DataError naming the file when it cannot be read or preprocessed.
    """
    path = Path(image_path)
    _check_nifti(path)
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
    header = _check_nifti(path)
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

    >>> import tempfile
    >>> out = save_mask(np.ones((2, 3, 4), np.uint8), np.eye(4), Path(tempfile.mkdtemp()) / "m.nii.gz")
    >>> nib.load(out).shape, nib.load(out).get_data_dtype()
    ((2, 3, 4), dtype('uint8'))
    """
    path = Path(path)
    if not path.name.endswith(_NIFTI_SUFFIXES):
        raise DataError(path, "output name must end in .nii.gz or .nii")
    return save_nifti_atomic(np.asarray(mask, dtype=np.uint8), np.asarray(affine, dtype=np.float64),
                             path, description="spleen mask (1 = spleen)")


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    sx, sy, sz = (float(v) for v in nib.affines.voxel_sizes(affine)[:3])
    return (sx, sy, sz)


def _dicom_to_nifti(folder: Path, out: Path) -> Path:
    """Convert the single CT series in ``folder`` with the course's checked DICOM path."""
    from .dicom import convert_series, find_series

    series = find_series(folder)
    if len(series) > 1:
        names = "; ".join(s.label() for s in series[:4])
        raise DataError(folder, f"holds {len(series)} DICOM series ({names}); give the folder of one series")
    return convert_series(series[0], out)


def predict_file(model_path: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike,
                 cfg: CourseConfig | None = None, device: str = "auto",
                 keep_largest: bool | None = None) -> PredictionResult:
    """Segment the spleen in a CT NIfTI file or a DICOM folder and save the mask to ``output``.

    A DICOM folder (one series) is converted with :mod:`spleen_helpers.dicom`
    (dicom2nifti, checks on); the CT it was converted to is saved beside the mask as
    ``<output name>_image.nii.gz``, since the mask is aligned with that volume.
    Bad input (missing or unsafe model, a file that is no image) raises a one-line
    :class:`~spleen_helpers.errors.CourseError`.

    >>> r = predict_file("runs/unet/best_metric_model.pth", "ct.nii.gz", "mask.nii.gz")  # doctest: +SKIP
    >>> print(f"{r.spleen_ml:.1f} mL")                                               # doctest: +SKIP
    """
    t0 = time.perf_counter()
    src, out = Path(input), Path(output)
    if not out.name.endswith(_NIFTI_SUFFIXES):
        raise DataError(out, "output name must end in .nii.gz or .nii")
    torch_device = resolve_device(device)
    model, cfg = load_model(model_path, cfg, torch_device)
    if not src.exists():
        raise DataError(src, "input does not exist (give a CT .nii/.nii.gz file or a DICOM folder)")
    image = src
    if src.is_dir():
        stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.name[: -len(".nii")]
        image = _dicom_to_nifti(src, out.with_name(f"{stem}_image.nii.gz"))
    elif not src.name.endswith(_NIFTI_SUFFIXES):
        raise DataError(src, "is neither a NIfTI file (.nii/.nii.gz) nor a DICOM folder")
    mask, affine = predict_volume(model, image, cfg, torch_device, keep_largest)
    save_mask(mask, affine, out)
    spacing = _spacing(affine)
    voxels = int(mask.sum())
    return PredictionResult(input=src, output=out, image=image,
                            shape=tuple(int(s) for s in mask.shape),  # type: ignore[arg-type]
                            spacing=spacing, affine=affine, spleen_voxels=voxels,
                            spleen_ml=voxels * float(np.prod(spacing)) / 1000.0,
                            seconds=time.perf_counter() - t0, device=str(torch_device))


# --------------------------------------------------------------------------- evaluation
def _case_name(image: str | os.PathLike) -> str:
    return Path(image).name.split(".")[0]


def _select_cases(data_dir: str | os.PathLike, cfg: CourseConfig,
                  cases: str | Sequence[dict[str, str] | str] | None) -> list[dict[str, str]]:
    """The cases to evaluate: the validation split (default), all cases, or the ones named."""
    if cases is None or (isinstance(cases, str) and cases == "val"):
        return split_datalist(load_datalist(data_dir), cfg)[1]
    if isinstance(cases, str) and cases == "all":
        return load_datalist(data_dir)
    if isinstance(cases, str):
        raise ConfigError(None, f"cases must be 'val', 'all' or a list, got {cases!r}")
    chosen: list[dict[str, str]] = []
    by_name: dict[str, dict[str, str]] | None = None
    for item in cases:
        if isinstance(item, dict):
            if not {"image", "label"} <= set(item):
                raise ConfigError(None, f"a case needs 'image' and 'label', got {sorted(item)}")
            chosen.append({"image": str(item["image"]), "label": str(item["label"])})
            continue
        if by_name is None:
            by_name = {_case_name(c["image"]): c for c in load_datalist(data_dir)}
        if str(item) not in by_name:
            raise DataError(data_dir, f"no case named {item!r} (cases: {', '.join(sorted(by_name)[:8])}...)")
        chosen.append(by_name[str(item)])
    if not chosen:
        raise ConfigError(None, "no cases to evaluate")
    return chosen


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def evaluate_cases(model_path: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   cfg: CourseConfig | None = None,
                   cases: str | Sequence[dict[str, str] | str] | None = None, *,
                   device: str = "auto", keep_largest: bool | None = None,
                   save_predictions: bool = True,
                   log: Callable[[str], None] = print) -> EvaluationReport:
    """Predict and score cases of ``data_dir``; write masks, ``metrics.csv`` and the summary to ``out_dir``.

    ``cases``: ``None``/``"val"`` = the validation split of
    :func:`~spleen_helpers.data.split_datalist` with the model's configuration (the cases
    the model did not train on), ``"all"``, or a list of case names (``"spleen_19"``) or
    ``{"image", "label"}`` dicts. Every case is checked with
    :func:`~spleen_helpers.data.validate_case` first. Masks go to ``out_dir/masks/<case>.nii.gz``.

    >>> report = evaluate_cases("runs/unet/best_metric_model.pth", "data/synthetic",  # doctest: +SKIP
    ...                         "runs/unet/eval")
    >>> print(report.table())                                                      # doctest: +SKIP
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    torch_device = resolve_device(device)
    model, cfg = load_model(model_path, cfg, torch_device)
    if keep_largest is not None:
        cfg = cfg.replace(keep_largest_component=bool(keep_largest))
    selected = _select_cases(data_dir, cfg, cases)
    masks_dir = out / MASKS_DIR if save_predictions else None
    log(f"evaluating {len(selected)} case(s) on {torch_device} with {model_path}"
        + (" (largest component kept)" if cfg.keep_largest_component else ""))
    results: list[CaseResult] = []
    for item in selected:
        c0 = time.perf_counter()
        name = _case_name(item["image"])
        info = validate_case(item["image"], item["label"])
        mask, affine = predict_volume(model, info.image, cfg, torch_device)
        ref = np.asanyarray(nib.load(info.label).dataobj)
        spacing = _spacing(affine)
        metrics = case_metrics(mask, ref, spacing)
        saved = save_mask(mask, affine, masks_dir / f"{name}.nii.gz") if masks_dir else None
        result = CaseResult(name=name, image=info.image, label=info.label, prediction=saved,
                            shape=info.shape, spacing=spacing, metrics=metrics,
                            seconds=time.perf_counter() - c0)
        results.append(result)
        log(f"  {name}: Dice {metrics.dice:.3f}  IoU {metrics.iou:.3f}  HD95 {metrics.hd95_mm:.1f} mm  "
            f"{metrics.pred_ml:.1f} / {metrics.ref_ml:.1f} mL ({result.seconds:.1f} s)"
            + (f"  [{metrics.note}]" if metrics.note else ""))
    report = EvaluationReport(cases=results, out_dir=out, model_path=Path(model_path), config=cfg,
                              device=str(torch_device), csv_path=out / METRICS_CSV,
                              summary_json=out / SUMMARY_JSON, summary_csv=out / SUMMARY_CSV,
                              masks_dir=masks_dir)
    _write_csv([r.row() for r in results], report.csv_path)
    summary = report.summary()
    _write_csv([{"metric": s.name, "mean": s.mean, "sd": s.sd, "n": s.n, "n_nan": s.n_nan}
                for s in summary.values()], report.summary_csv)
    report.seconds = time.perf_counter() - t0
    write_json_atomic({
        "model": str(Path(model_path).resolve()), "data_dir": str(Path(data_dir).resolve()),
        "device": report.device, "cases": [r.name for r in results],
        "space": "original image space (prediction inverted to each image's grid and spacing)",
        "keep_largest_component": cfg.keep_largest_component,
        "metrics": {s.name: {"mean": s.mean, "sd": s.sd, "n": s.n, "n_nan": s.n_nan}
                    for s in summary.values()},
        "seconds": report.seconds,
    }, report.summary_json)
    return report


# ------------------------------------------------------------------------------ helpers
def find_or_train_model(run_dir: str | os.PathLike, data_dir: str | os.PathLike,
                        fallback_dir: str | os.PathLike, max_epochs: int,
                        cfg: CourseConfig | None = None, log: Callable[[str], None] = print,
                        **overrides: Any) -> Path:
    """The best model of ``run_dir``; if there is none, a short run trained in ``fallback_dir``.

    ``run_dir`` itself is never written to (the training notebook or CLI owns it). An
    existing best model in ``fallback_dir`` is reused. When ``max_epochs`` is shorter than
    the validation interval, the interval is shortened to it so that a best model is saved.

    >>> find_or_train_model("runs/unet", "data/synthetic", "runs/04/fallback", 2)  # doctest: +SKIP
    """
    best = Path(run_dir) / BEST_MODEL_NAME
    if best.is_file():
        log(f"using the trained model {best}")
        return best
    fallback = Path(fallback_dir) / BEST_MODEL_NAME
    if fallback.is_file():
        log(f"no model in {run_dir}; using the short fallback run {fallback}")
        return fallback
    if int(max_epochs) < 1:
        raise ConfigError(None, f"max_epochs of the fallback training must be >= 1, got {max_epochs}")
    cfg = cfg or config_for(data_dir)
    epochs = int(max_epochs)
    cfg = cfg.replace(**(overrides | {"max_epochs": epochs,
                                      "val_interval": min(cfg.val_interval, epochs)}))
    log(f"no model in {run_dir} (train one with notebook 03 or `spleen-course train`); "
        f"training a short {epochs}-epoch run in {fallback_dir} instead")
    result = train(data_dir, fallback_dir, cfg, overwrite=True, progress=False, log=log)
    if not result.best_model_path.is_file():  # pragma: no cover - train validates at val_interval
        raise DataError(fallback_dir, "training saved no best model")
    return result.best_model_path

