"""Check a series' slices and order them along the slice normal into one evenly spaced stack.

The course checks what it needs to order the slices; slice increment, orientation
consistency and gantry tilt are dicom2nifti's own validators, called on the ordered headers
(docs/dicom.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from ...ground.errors import DicomError, quiet_logger
from .series import (
    _DUPLICATE_MM,
    _SPACING_RTOL,
    _UNIT_ATOL,
    MAX_TILT_DEG,
    MIN_SLICES,
    DicomSeries,
    _NotAVolume,
    _series_label,
    _series_number,
    _Slice,
)


# ----------------------------------------------------------------------------- checking
def _floats(value: Any, n: int, where: Path | str, tag: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise DicomError(where, f"{tag} is not numeric: {value!r}") from exc
    if len(out) != n or not all(np.isfinite(out)):
        raise DicomError(where, f"{tag} must have {n} finite values, got {value!r}")
    return out


def _refusal(validator: Callable[[list[Dataset]], None], headers: list[Dataset]) -> str | None:
    """The code one of dicom2nifti's validators refuses ``headers`` with, or None."""
    from dicom2nifti.exceptions import ConversionValidationError

    try:
        with quiet_logger("dicom2nifti"):
            validator(headers)
    except ConversionValidationError as exc:
        return str(exc)
    return None


def _dicom2nifti_checks(folder: Path, name: str, normal: np.ndarray, dist: np.ndarray,
                        slices: list[_Slice]) -> float:
    """Run dicom2nifti's own orientation, tilt and slice-increment validators on the ordered
    headers; turn a refusal into one line that names the slices at fault.

    Returns the gantry tilt in degrees when dicom2nifti's orthogonality check refuses a
    stack that is otherwise regular, else 0.0.
    """
    from dicom2nifti import common

    headers = [s.header for s in slices]
    tilt = 0.0
    if code := _refusal(common.validate_orientation, headers):
        orients = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
        worst = int(np.abs(orients - orients[0]).max(axis=1).argmax())
        raise DicomError(folder, f"{name}: inconsistent orientation within the series: "
                                 f"{slices[worst].name} has {tuple(orients[worst])}, "
                                 f"{slices[0].name} has {tuple(orients[0])} [{code}]")
    if code := _refusal(common.validate_orthogonal, headers):
        run = np.array([float(v) for v in headers[-1].ImagePositionPatient]) \
            - np.array([float(v) for v in headers[0].ImagePositionPatient])
        cosine = abs(float(run @ normal) / float(np.linalg.norm(run)))
        tilt = float(np.degrees(np.arccos(min(1.0, cosine))))
        if tilt > MAX_TILT_DEG:
            raise DicomError(folder, f"{name}: slice positions run {tilt:.1f} degrees off the slice "
                                     f"normal: not one stack of slices [{code}]")
    if code := _refusal(common.validate_slice_increment, headers):
        steps = np.diff(dist)
        typical = float(np.median(steps))
        i = int(np.abs(steps - typical).argmax())
        ratio = steps[i] / typical
        where = (f"between {dist[i]:.2f} and {dist[i + 1]:.2f} mm "
                 f"({slices[i].name} -> {slices[i + 1].name})")
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            raise DicomError(folder, f"{name}: missing slice(s): a {steps[i]:.2f} mm step {where} "
                                     f"where the slice step is {typical:.2f} mm "
                                     f"(about {round(ratio) - 1} slice(s) missing) [{code}]")
        raise DicomError(folder, f"{name}: uneven slice spacing: a {steps[i]:.2f} mm step {where} "
                                 f"where the typical step is {typical:.2f} mm [{code}]")
    return tilt


def _build_series(folder: Path, uid: str, slices: list[_Slice]) -> DicomSeries:
    """Check one SeriesInstanceUID group and order its slices along the normal."""
    first = slices[0]
    h0 = first.header
    number = _series_number(h0)
    description = str(h0.get("SeriesDescription", "") or "")
    name = _series_label(number, description, uid)
    where = first.path if first.frame is None else f"{first.path} (frame {first.frame + 1})"
    orient = _floats(h0.ImageOrientationPatient, 6, where, "ImageOrientationPatient")
    row, col = np.array(orient[:3]), np.array(orient[3:])
    if abs(np.linalg.norm(row) - 1) > _UNIT_ATOL or abs(np.linalg.norm(col) - 1) > _UNIT_ATOL \
            or abs(float(np.dot(row, col))) > _UNIT_ATOL:
        raise DicomError(where, f"ImageOrientationPatient {orient} is not two unit, "
                                "perpendicular direction cosines")
    spacing = _floats(h0.PixelSpacing, 2, where, "PixelSpacing")
    if min(spacing) <= 0:
        raise DicomError(where, f"PixelSpacing {spacing} must be positive")
    size = (int(h0.Rows), int(h0.Columns))
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    if len({s.frame is None for s in slices}) > 1:
        raise DicomError(folder, f"{name}: mixes multi-frame and single-frame files")

    keyed = []
    for s in slices:
        ds = s.header
        at = s.path if s.frame is None else f"{s.path} (frame {s.frame + 1})"
        _floats(ds.ImageOrientationPatient, 6, at, "ImageOrientationPatient")
        sp = _floats(ds.PixelSpacing, 2, at, "PixelSpacing")
        if not np.allclose(sp, spacing, rtol=_SPACING_RTOL, atol=0):
            raise DicomError(folder, f"{name}: inconsistent pixel spacing within the series: "
                                     f"{s.name} has {sp}, {first.name} has {spacing}")
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise DicomError(folder, f"{name}: inconsistent image size within the series: "
                                     f"{s.name} is {ds.Rows}x{ds.Columns}, "
                                     f"{first.name} is {size[0]}x{size[1]}")
        pos = np.array(_floats(ds.ImagePositionPatient, 3, at, "ImagePositionPatient"))
        inst = ds.get("InstanceNumber")
        inst = int(inst) if str(inst or "").strip().lstrip("-").isdigit() else 0  # tie-break only
        keyed.append((float(np.dot(pos, normal)), inst, str(s.path), s.frame or 0, pos, s))
    keyed.sort(key=lambda k: k[:4])
    ordered = [k[5] for k in keyed]
    dist = np.array([k[0] for k in keyed])
    n = len(keyed)

    if n > 1 and dist[-1] - dist[0] <= _DUPLICATE_MM:
        raise _NotAVolume(folder, f"{name}: all {n} slices lie at the same position "
                                 f"({dist[0]:.2f} mm along the slice normal): they do not form a volume")
    steps = np.diff(dist)
    for i in np.flatnonzero(steps <= _DUPLICATE_MM):
        raise DicomError(folder, f"{name}: duplicate slice position {dist[i]:.2f} mm "
                                 f"({ordered[i].name} and {ordered[i + 1].name}); the series may "
                                 "hold several acquisitions, echoes or time points")
    if n < MIN_SLICES:
        raise _NotAVolume(folder, f"{name}: only {n} slice(s); a volume needs at least {MIN_SLICES} "
                                 "(a localizer?)")
    tilt = _dicom2nifti_checks(folder, name, normal, dist, ordered)
    slice_step = float((dist[-1] - dist[0]) / (n - 1))
    step_vector = (keyed[-1][4] - keyed[0][4]) / (n - 1)
    origin = keyed[0][4]
    multiframe = first.frame is not None
    return DicomSeries(
        uid=uid, folder=folder, files=tuple(s.path for s in ordered),
        positions=tuple(float(d) for d in dist),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        orientation=orient,  # type: ignore[arg-type]
        pixel_spacing=(spacing[0], spacing[1]), slice_step=slice_step,
        rows=size[0], columns=size[1], description=description, series_number=number,
        modality=str(h0.get("Modality", "") or ""),
        study_uid=str(h0.get("StudyInstanceUID", "") or ""),
        frames=tuple(int(s.frame) for s in ordered) if multiframe else (),  # type: ignore[arg-type]
        step_vector=(float(step_vector[0]), float(step_vector[1]), float(step_vector[2])),
        tilt_deg=tilt,
    )
