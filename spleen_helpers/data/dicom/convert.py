"""Convert a DICOM series, or every volume of a study, to NIfTI with dicom2nifti (checks on).

Each NIfTI is written atomically; a study's series are converted or skipped one by one and
reported in one table.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ...ground.errors import DicomError, quiet_logger
from ...ground.files import atomic_path
from .choose import split_series
from .hu import _pixels, _read_slices
from .scan import scan_study
from .series import (
    _DICOM2NIFTI_REASONS,
    _TABLE_HEADER,
    MIN_SLICES,
    DicomSeries,
    Notify,
    SkippedSeries,
    _notifier,
    _row,
    _sort_key,
    _table,
)

__all__ = ["series_name", "convert_series", "SeriesOutcome", "StudyConversion", "convert_study", "dicom_dir_to_nifti"]


# ---------------------------------------------------------------------------- conversion
def series_name(series: DicomSeries) -> str:
    """A file-name stem from series number and description (+ chunk), e.g. ``003_ct_body_chunk02``."""
    parts = []
    if series.series_number is not None:
        parts.append(f"{series.series_number:03d}")
    slug = re.sub(r"[^a-z0-9]+", "_", series.description.lower()).strip("_")[:40]
    if slug:
        parts.append(slug)
    if not parts:
        parts.append("series_" + hashlib.sha1(series.uid.encode()).hexdigest()[:8])
    if series.chunk is not None:
        parts.append(f"chunk{series.chunk:02d}")
    return "_".join(parts)


@contextlib.contextmanager
def _dicom2nifti_settings(**values: Any) -> Iterator[None]:
    """Set dicom2nifti's process-wide settings for one conversion, then restore them."""
    import dicom2nifti.settings as settings

    saved = {name: getattr(settings, name) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def _compact_float_image(path: Path, round_values: bool = False) -> None:
    """Re-save a float NIfTI as int16 when every voxel is a whole number in int16 range.

    dicom2nifti returns rescaled CT as float64 (8 bytes a voxel); HU values are integers, so
    int16 holds them exactly at a quarter of the size. ``round_values`` first rounds to
    whole numbers (after resampling a series whose values were whole numbers). Anything
    else is left as written.
    """
    import nibabel as nib

    img = nib.load(path)
    if not np.issubdtype(img.get_data_dtype(), np.floating):
        return
    data = np.asanyarray(img.dataobj)
    if round_values:
        data = np.round(data)
    if data.size == 0 or not np.array_equal(data, np.round(data)) \
            or data.min() < -32768 or data.max() > 32767:
        return
    new = nib.Nifti1Image(data.astype(np.int16), img.affine, img.header)
    new.set_data_dtype(np.int16)
    new.header.set_slope_inter(1.0, 0.0)
    nib.save(new, path)


def _whole_number_values(datasets: Sequence[Dataset]) -> bool:
    """True when every slice's rescale maps integers to integers (CT's HU)."""
    for ds in datasets:
        try:
            slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError):
            return False
        if not (slope.is_integer() and intercept.is_integer()) or "FloatPixelData" in ds:
            return False
    return True


#: Value given to voxels outside the scanned field when a tilted CT is resampled: air.
_CT_PADDING_HU = -1024


def convert_series(series: DicomSeries, out_path: str | os.PathLike, reorient: bool = True, *,
                   tilt_correction: bool = True, notify: Notify | None = None) -> Path:
    """Convert one series (or chunk) to a NIfTI file with dicom2nifti, validation on; atomic.

    With ``reorient=True`` (default) dicom2nifti stores the voxels along the patient axes
    (its LAS layout: no oblique or permuted axes left for later transforms to guess). A
    gantry-tilted series (:attr:`DicomSeries.tilt_deg`) is resampled by dicom2nifti onto a
    grid perpendicular to its slices (linear interpolation, air outside the scanned field
    for CT; always reoriented), with a line to ``notify`` stating the angle; with
    ``tilt_correction=False`` it is refused instead. Any dicom2nifti refusal becomes a
    one-line :class:`DicomError` naming the folder. Integral float output (rescaled CT) is
    stored as int16.

    >>> import tempfile, nibabel as nib
    >>> from spleen_helpers.data.phantom_dicom import write_ct_series
    >>> from spleen_helpers.data.dicom.scan import find_series
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = write_ct_series(np.zeros((8, 8, 5), np.int16), np.diag([-1.0, -1.0, 2.0, 1.0]), tmp)
    >>> out = convert_series(find_series(tmp)[0], tmp / "ct.nii.gz")
    >>> nib.load(out).shape, nib.aff2axcodes(nib.load(out).affine)
    ((8, 8, 5), ('L', 'A', 'S'))
    """
    from dicom2nifti.convert_dicom import dicom_array_to_nifti
    from dicom2nifti.exceptions import ConversionError, ConversionValidationError

    out = Path(out_path)
    if not (out.name.endswith(".nii.gz") or out.name.endswith(".nii")):
        raise DicomError(out, "output name must end in .nii.gz or .nii")
    if series.num_slices < MIN_SLICES:
        raise DicomError(series.folder, f"{series.label()}: only {series.num_slices} slice(s); "
                                        f"conversion needs at least {MIN_SLICES} (a localizer?)")
    tilted = series.tilt_deg > 0
    if tilted and not tilt_correction:
        raise DicomError(series.folder, f"{series.label()}: slice positions run {series.tilt_deg:.1f} "
                                        "degrees off the slice normal (gantry tilt) and tilt "
                                        "correction is off [NON_CUBICAL_IMAGE/GANTRY_TILT]")
    datasets = _read_slices(series)
    padding = _CT_PADDING_HU if series.modality.upper() == "CT" else 0
    settings = dict(validate_slicecount=True, validate_orientation=True, validate_orthogonal=not tilted,
                    validate_slice_increment=True, validate_instance_number=False, resample=tilted,
                    resample_padding=padding, resample_spline_interpolation_order=1)
    try:
        with _dicom2nifti_settings(**settings), quiet_logger("dicom2nifti"), atomic_path(out) as tmp:
            dicom_array_to_nifti(datasets, str(tmp), reorient_nifti=reorient)
            _compact_float_image(tmp, round_values=tilted and _whole_number_values(datasets))
    except (ConversionValidationError, ConversionError) as exc:
        code = str(exc)
        reason = _DICOM2NIFTI_REASONS.get(code, code)
        raise DicomError(series.folder, f"{series.label()}: dicom2nifti refused the conversion: "
                                        f"{reason} [{code}]") from exc
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        # Name the slice at fault when one cannot be decoded (cut-off copy, missing plugin).
        for path, ds in zip(series.files, datasets):
            _pixels(path, ds)
        raise DicomError(series.folder, f"{series.label()}: conversion failed: "
                                        f"{type(exc).__name__}: {exc}") from exc
    if tilted:
        what = f"{_CT_PADDING_HU} HU (air)" if padding else "0"
        _notifier(notify)(f"{series.folder}: {series.label()}: gantry tilt of {series.tilt_deg:.1f} "
                          f"degrees: resampled by dicom2nifti onto a grid perpendicular to the "
                          f"slices (linear interpolation; {what} outside the scanned field)")
    return out


@dataclass(frozen=True)
class SeriesOutcome:
    """What :func:`convert_study` did with one series: ``written``, ``skipped`` or ``failed``."""

    label: str
    series_number: int | None
    description: str
    modality: str
    num_slices: int
    status: str
    reason: str = ""
    outputs: tuple[Path, ...] = ()
    uid: str = ""


@dataclass(frozen=True)
class StudyConversion:
    """Every series of a folder and what became of it (see :func:`convert_study`)."""

    folder: Path
    out_dir: Path
    outcomes: tuple[SeriesOutcome, ...]

    @property
    def written(self) -> list[Path]:
        return [p for o in self.outcomes for p in o.outputs]

    def table(self) -> str:
        """A summary table: one row per series, written (to which files) or skipped/failed and why."""
        rows = []
        for o in self.outcomes:
            if o.status == "written":
                names = [p.name for p in o.outputs]
                result = "written: " + (names[0] if len(names) == 1 else
                                        f"{len(names)} chunks, {names[0]} ... {names[-1]}")
            else:
                result = f"{o.status}: {o.reason}"
            rows.append(_row(o, result))  # type: ignore[arg-type]
        return _table(rows, _TABLE_HEADER)

    def require_written(self) -> list[Path]:
        """The written files; a one-line :class:`DicomError` with every reason when there are none."""
        if self.written:
            return self.written
        reasons = "; ".join(f"{o.label}: {o.reason}" for o in self.outcomes)
        raise DicomError(self.folder, f"no series could be converted ({reasons})")


def _outcome(s: DicomSeries | SkippedSeries, status: str, reason: str = "",
             outputs: tuple[Path, ...] = ()) -> SeriesOutcome:
    return SeriesOutcome(label=s.label(), series_number=s.series_number, description=s.description,
                         modality=s.modality, num_slices=s.num_slices, status=status,
                         reason=reason, outputs=outputs, uid=s.uid)


def _remove_quietly(paths: Sequence[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


def convert_study(in_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  slices_per_group: int | None = None, *, drop_remainder: bool = False,
                  reorient: bool = True, tilt_correction: bool = True,
                  notify: Notify | None = None) -> StudyConversion:
    """Convert every series of ``in_dir`` that forms a volume to ``out_dir/<name>.nii.gz``.

    Series that are not volumes are skipped (:func:`scan_study`), each with one line to
    ``notify`` (else a :class:`DicomWarning`). A series that fails -- a missing or duplicate
    slice, too short a chunk, a tilt with ``tilt_correction=False``, pixels that cannot be
    decoded -- is reported the same way, as an error, with the status ``failed``, and leaves
    no file behind (chunks of it already written are removed); the others are still
    converted. Names come from series number and
    description (:func:`series_name`; a hash of the UID tells apart two series that share
    both). With ``slices_per_group`` each series is cut by :func:`split_series`. Returns a
    :class:`StudyConversion` listing every series; raises :class:`DicomError` only for
    problems with the folder itself (see :func:`scan_study`) or with ``slices_per_group``.

    >>> import tempfile
    >>> from spleen_helpers.data.phantom import write_phantom_study
    >>> tmp = Path(tempfile.mkdtemp())
    >>> result = convert_study(write_phantom_study(tmp / "study"), tmp / "out", notify=lambda m: None)
    >>> [p.name for p in result.written]
    ['002_abdomen_6_mm.nii.gz', '003_abdomen_3_mm.nii.gz']
    >>> [o.status for o in result.outcomes]
    ['skipped', 'written', 'written', 'skipped']
    """
    src, dst = Path(in_dir), Path(out_dir)
    if slices_per_group is not None and int(slices_per_group) < MIN_SLICES:
        raise DicomError(src, f"slices_per_group must be at least {MIN_SLICES} "
                              f"(dicom2nifti refuses smaller volumes), got {slices_per_group}")
    report = _notifier(notify)
    scan = scan_study(src, notify=report)
    names: dict[str, int] = {}
    for s in scan.series:
        names[series_name(s)] = names.get(series_name(s), 0) + 1
    outcomes: dict[int, SeriesOutcome] = {}
    order = sorted([*scan.series, *scan.skipped], key=_sort_key)
    for s in scan.skipped:
        outcomes[id(s)] = _outcome(s, "failed" if s.broken else "skipped", s.reason)
    for s in scan.series:
        stem = series_name(s)
        if names[stem] > 1:  # two series with the same number and description
            stem += "_" + hashlib.sha1(s.uid.encode()).hexdigest()[:8]
        jobs = [s]
        if slices_per_group is not None:
            plan = split_series(s, int(slices_per_group), drop_remainder=drop_remainder, notify=report)
            jobs = list(plan.chunks)
            short = [j for j in jobs if j.num_slices < MIN_SLICES]
            if not jobs or short:
                reason = (f"{plan.summary()}: nothing left to convert" if not jobs else
                          f"chunk {short[0].chunk} has only {short[0].num_slices} slice(s); conversion "
                          f"needs at least {MIN_SLICES}; choose another slices_per_group or drop "
                          "the remainder")
                report(f"{src}: {s.label()}: not converted: {reason}")
                outcomes[id(s)] = _outcome(s, "failed", reason)
                continue
        written: list[Path] = []
        try:
            for job in jobs:
                name = stem if job.chunk is None else f"{stem}_chunk{job.chunk:02d}"
                written.append(convert_series(job, dst / f"{name}.nii.gz", reorient=reorient,
                                              tilt_correction=tilt_correction, notify=report))
        except DicomError as exc:
            _remove_quietly(written)
            report(f"{src}: {s.label()}: not converted: {exc}")
            outcomes[id(s)] = _outcome(s, "failed", str(exc))
            continue
        except BaseException:
            _remove_quietly(written)
            raise
        outcomes[id(s)] = _outcome(s, "written", outputs=tuple(written))
    return StudyConversion(folder=src, out_dir=dst, outcomes=tuple(outcomes[id(s)] for s in order))


def dicom_dir_to_nifti(in_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       slices_per_group: int | None = None, *, drop_remainder: bool = False,
                       reorient: bool = True, tilt_correction: bool = True,
                       notify: Notify | None = None) -> list[Path]:
    """Convert every volume under ``in_dir`` (or every chunk of it); return the written files.

    :func:`convert_study` does the work and reports each skipped or failed series; this
    returns its written files, or raises one :class:`DicomError` line with every reason
    when not one series could be converted (``out_dir`` is then left untouched).

    >>> import tempfile
    >>> from spleen_helpers.data.phantom_dicom import write_ct_series
    >>> from spleen_helpers.data.dicom.scan import find_series
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = write_ct_series(np.zeros((8, 8, 12), np.int16), np.eye(4), tmp / "in",
    ...                     series_description="CT abdomen")
    >>> [p.name for p in dicom_dir_to_nifti(tmp / "in", tmp / "out", slices_per_group=8,
    ...                                     notify=lambda m: None)]
    ['001_ct_abdomen_chunk01.nii.gz', '001_ct_abdomen_chunk02.nii.gz']
    """
    return convert_study(in_dir, out_dir, slices_per_group, drop_remainder=drop_remainder,
                         reorient=reorient, tilt_correction=tilt_correction,
                         notify=notify).require_written()
