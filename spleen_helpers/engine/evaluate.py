"""Per-case metrics of predicted spleen masks, and the evaluation report of a data set.

:func:`evaluate_cases` segments each case with :func:`~spleen_helpers.engine.predict.predict_volume`
(the prediction comes back on the image's own voxel grid), scores it against its label with
:func:`case_metrics` and writes the masks, ``metrics.csv`` and the summary.

**Where the metrics are computed.** In the *original image space*: the prediction is
brought back to the input's voxel grid (``Invertd`` in
:func:`~spleen_helpers.engine.predict.predict_volume`) and compared with the reference label as
it was annotated, with the voxel spacing read from the image's affine. Resampling the
reference instead would change it (nearest-neighbour resampling adds or removes boundary
voxels), so the numbers would describe a different mask than the one a radiologist drew,
and volumes in mL would depend on ``cfg.pixdim``. Surface distances use the true,
anisotropic spacing (MONAI's ``spacing=`` argument), so they are millimetres.

**Empty masks.** Dice and IoU follow MONAI's ``ignore_empty=False`` rule: both empty → 1,
one empty → 0. Surface distances (HD95, ASD) are undefined when either mask is empty:
they are reported as ``nan`` and the case's ``note`` says why; summaries average the
finite values and count the others.

**Which definitions.** MONAI's. A mask's surface is its voxels with a face neighbour outside
it (the mask less its erosion by the 6-neighbour cross: ``monai.metrics.utils.get_mask_edges``).
A directed surface distance runs from each surface voxel of one mask to the nearest surface
voxel of the other, Euclidean in mm (voxel indices times the spacing). ``hd95_mm`` is the
larger of the two directed 95th percentiles (linearly interpolated, ``torch.quantile``);
``asd_mm`` is the mean of both directions' distances pooled together. Other tools differ:
medpy's ``hd95`` takes one 95th percentile of both directions pooled (usually smaller), and
medpy before 0.5.2 averaged the two directed means. ``tests/test_evaluate.py`` checks every
metric against shapes worked out by hand and against scipy and medpy.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import load_datalist, load_test_cases, split_datalist, validate_case
from ..data.nifti import case_name, open_nifti, volume_ml, voxel_spacing
from ..ground.errors import ConfigError, DataError
from ..ground.files import atomic_path, write_json_atomic
from ..ground.settings import CourseConfig
from .model import resolve_device
from .predict import predict_volume, save_mask
from .weights import load_model_or_bundle

__all__ = [
    "METRICS_CSV", "SUMMARY_JSON", "SUMMARY_CSV", "MASKS_DIR", "METRICS", "CaseMetrics",
    "CaseResult", "MetricSummary", "EvaluationReport", "case_metrics", "evaluate_cases"
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
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
        compute_iou,
    )

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
    return CaseMetrics(dice=dice, iou=iou, hd95_mm=hd95, asd_mm=asd, pred_ml=volume_ml(pv, spacing_mm),
                       ref_ml=volume_ml(rv, spacing_mm), pred_voxels=pv, ref_voxels=rv, note=note)


# --------------------------------------------------------------------------- evaluation
def _select_cases(data_dir: str | os.PathLike, cfg: CourseConfig,
                  cases: str | Sequence[dict[str, str] | str] | None) -> list[dict[str, str]]:
    """The cases to evaluate: the validation split (default), the held-out test cases, all
    training cases, or the ones named."""
    if cases is None or (isinstance(cases, str) and cases == "val"):
        return split_datalist(load_datalist(data_dir), cfg)[1]
    if isinstance(cases, str) and cases == "test":
        test = load_test_cases(data_dir)
        if not test:
            raise DataError(data_dir, "has no labelled test cases (the real Task09 data keeps its "
                                      "test labels); evaluate the validation cases instead")
        return test
    if isinstance(cases, str) and cases == "all":
        return load_datalist(data_dir)
    if isinstance(cases, str):
        raise ConfigError(None, f"cases must be 'val', 'test', 'all' or a list, got {cases!r}")
    chosen: list[dict[str, str]] = []
    by_name: dict[str, dict[str, str]] | None = None
    for item in cases:
        if isinstance(item, dict):
            if not {"image", "label"} <= set(item):
                raise ConfigError(None, f"a case needs 'image' and 'label', got {sorted(item)}")
            chosen.append({"image": str(item["image"]), "label": str(item["label"])})
            continue
        if by_name is None:
            by_name = {case_name(c["image"]): c for c in load_datalist(data_dir)}
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
                   save_predictions: bool = True, keep_headers: bool = False,
                   log: Callable[[str], None] = print) -> EvaluationReport:
    """Predict and score cases of ``data_dir``; write masks, ``metrics.csv`` and the summary to ``out_dir``.

    ``cases``: ``None``/``"val"`` = the validation split of
    :func:`~spleen_helpers.data.dataset.split_datalist` with the model's configuration (the cases
    the model did not train on, but that chose its best epoch), ``"test"`` = the held-out
    test cases (:func:`~spleen_helpers.data.dataset.load_test_cases`: never seen in training or
    model selection), ``"all"`` = every training case, or a list of case names (``"spleen_19"``) or
    ``{"image", "label"}`` dicts. Every case is checked with
    :func:`~spleen_helpers.data.dataset.validate_case` first; a case whose spleen lies where a header
    turned 180° puts it is read with its header turned back, as training reads it, unless
    ``keep_headers`` (image and label move together, so its scores are the same either way;
    its mask is saved with the file's own header). Masks go to ``out_dir/masks/<case>.nii.gz``.

    >>> report = evaluate_cases("runs/unet/best_metric_model.pth", "data/synthetic",  # doctest: +SKIP
    ...                         "runs/unet/eval")
    >>> print(report.table())                                                      # doctest: +SKIP
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    torch_device = resolve_device(device)
    model, cfg = load_model_or_bundle(model_path, cfg, torch_device)
    if keep_largest is not None:
        cfg = cfg.replace(keep_largest_component=bool(keep_largest))
    selected = _select_cases(data_dir, cfg, cases)
    masks_dir = out / MASKS_DIR if save_predictions else None
    log(f"evaluating {len(selected)} case(s) on {torch_device} with {model_path}"
        + (" (largest component kept)" if cfg.keep_largest_component else ""))
    results: list[CaseResult] = []
    for item in selected:
        c0 = time.perf_counter()
        name = case_name(item["image"])
        info = validate_case(item["image"], item["label"])
        turned = not keep_headers and info.side is not None and info.side.verdict == "turned"
        mask, affine = predict_volume(model, info.image, cfg, torch_device, turned=turned)
        ref = open_nifti(info.label, "label", read_data=True)[1]
        spacing = voxel_spacing(affine)
        metrics = case_metrics(mask, ref, spacing)
        saved = save_mask(mask, affine, masks_dir / f"{name}.nii.gz") if masks_dir else None
        result = CaseResult(name=name, image=info.image, label=info.label, prediction=saved,
                            shape=info.shape, spacing=spacing, metrics=metrics,
                            seconds=time.perf_counter() - c0)
        results.append(result)
        log(f"  {name}: Dice {metrics.dice:.3f}  IoU {metrics.iou:.3f}  HD95 {metrics.hd95_mm:.1f} mm  "
            f"{metrics.pred_ml:.1f} / {metrics.ref_ml:.1f} mL ({result.seconds:.1f} s)"
            + (f"  [{metrics.note}]" if metrics.note else "")
            + ("  [read with its header turned back: its spleen lies where a turned header puts it]"
               if turned else ""))
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
