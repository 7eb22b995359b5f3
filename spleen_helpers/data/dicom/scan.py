"""Scan a DICOM folder: read every header, group the files by series, order each one's slices.

Example:
    >>> import tempfile
    >>> from spleen_helpers.data.phantom import PhantomSpec, generate_case
    >>> from spleen_helpers.data.phantom_dicom import write_ct_series
    >>> image, _, affine = generate_case(0, PhantomSpec(shape=(16, 16, 6)))
    >>> folder = Path(tempfile.mkdtemp()) / "dicom"
    >>> files = write_ct_series(image, affine, folder)
    >>> [s.num_slices for s in find_series(folder)]
    [6]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ...ground.errors import DicomError
from .order import _build_series
from .series import (
    DicomSeries,
    Notify,
    SkippedSeries,
    StudyScan,
    _NotAVolume,
    _notifier,
    _series_label,
    _series_number,
    _Slice,
    _sort_key,
)

__all__ = ["scan_study", "find_series"]


# --------------------------------------------------------------------- reading headers
def _iter_files(folder: Path) -> Iterator[Path]:
    """Every regular file under ``folder``, hidden files and folders (``.name``) excluded."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: Path, notify: Notify) -> Dataset | None:
    """The header of a DICOM file, or None (reported) for anything that is not one.

    A damaged DICOM file stops the scan: which series it belonged to cannot be told, so no
    series of the folder could be trusted to be complete.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        notify(f"{path}: not a DICOM file, skipped")
        return None
    except Exception as exc:  # pydicom raises many types for damaged files
        if _has_dicm_magic(path):
            raise DicomError(path, f"is a damaged DICOM file ({type(exc).__name__}: {exc})") from exc
        notify(f"{path}: not a DICOM file, skipped")
        return None
    if len(ds) == 0:  # pydicom reads a file cut off inside its header without complaint
        raise DicomError(path, "is a damaged DICOM file: nothing readable after the file header "
                               "(truncated?)")
    return ds


_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


# Where an enhanced (multi-frame) image keeps each per-slice attribute: the functional group
# macro holding it (DICOM PS3.3 C.7.6.16). dicom2nifti's and highdicom's readers of these
# groups are private functions, hence this table.
_FRAME_GROUPS = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
    "RescaleType": "PixelValueTransformationSequence",
}


# Attributes a frame's stand-alone header copies from its file: the series, the pixel format.
_COPIED = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber",
           "SeriesDescription", "Modality", "ImageType", "FrameOfReferenceUID", "SamplesPerPixel",
           "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
           "HighBit", "PixelRepresentation")


def _is_multiframe(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1


def _frame_value(ds: Dataset, index: int, keyword: str) -> Any:
    """A per-slice attribute of frame ``index``: per-frame group, shared group, then top level."""
    group = _FRAME_GROUPS[keyword]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    for items in ((per_frame[index],) if per_frame else ()) + (tuple(shared[:1]) if shared else ()):
        seq = items.get(group)
        if seq and keyword in seq[0]:
            return seq[0][keyword].value
    return ds.get(keyword)


def _frame_header(ds: Dataset, index: int) -> Dataset:
    """A single-frame header for frame ``index`` of a multi-frame image (no pixels)."""
    h = Dataset()
    for keyword in _COPIED:
        if keyword in ds:
            setattr(h, keyword, ds[keyword].value)
    for keyword in _FRAME_GROUPS:
        value = _frame_value(ds, index, keyword)
        if value is not None:
            setattr(h, keyword, value)
    h.InstanceNumber = index + 1
    return h




def _sop_class_name(ds: Dataset) -> str:
    """The SOP class of a file by name, e.g. ``Secondary Capture Image Storage``."""
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if not uid:
        return "unknown SOP class"
    name = pydicom.uid.UID(str(uid)).name
    return name if name != str(uid) else f"SOP class {uid}"


def _slices_of(path: Path, ds: Dataset) -> tuple[list[_Slice], str | None]:
    """The slices of one file, or ``([], reason)`` when the file is no image with geometry."""
    if "Rows" not in ds or "Columns" not in ds:
        return [], f"not an image ({_sop_class_name(ds)})"
    if not _is_multiframe(ds):
        missing = [t for t in _GEOMETRY_TAGS if t not in ds]
        if missing:
            return [], (f"no image geometry ({', '.join(missing)} missing): a "
                        f"{_sop_class_name(ds)}, e.g. a screenshot or a dose report")
        return [_Slice(path, None, ds)], None
    n = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None:
        return [], f"a multi-frame image ({n} frames) without per-frame positions ({_sop_class_name(ds)})"
    if len(per_frame) != n:
        raise DicomError(path, f"has {n} frames but {len(per_frame)} per-frame functional groups")
    slices = [_Slice(path, i, _frame_header(ds, i)) for i in range(n)]
    missing = [t for t in _GEOMETRY_TAGS if t not in slices[0].header]
    if missing:
        return [], (f"no image geometry in its functional groups ({', '.join(missing)} missing; "
                    f"{_sop_class_name(ds)})")
    return slices, None


def _is_localizer(slices: list[_Slice]) -> bool:
    return all("LOCALIZER" in [str(v).upper() for v in s.header.get("ImageType", [])] for s in slices)




@dataclass
class _Group:
    """The files of one SeriesInstanceUID while scanning."""

    slices: list[_Slice] = field(default_factory=list)
    unusable: list[tuple[Path, Dataset, str]] = field(default_factory=list)  # file, header, reason
    first: Dataset | None = None          # header of the first image file (or the damaged one)
    problem: DicomError | None = None     # a file of the series that cannot be read as slices


def _scan(root: Path, notify: Notify) -> StudyScan:
    """Read, group and check every file under ``root``; report only non-DICOM files."""
    if not root.is_dir():
        raise DicomError(root, "is not a folder")
    files = list(_iter_files(root))
    if not files:
        raise DicomError(root, "is empty: no files to read")
    groups: dict[str, _Group] = {}
    ignored: list[Path] = []
    for path in files:
        ds = _read_header(path, notify)
        if ds is None:
            ignored.append(path)
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        group = groups.setdefault(uid, _Group())
        try:
            slices, reason = _slices_of(path, ds)
        except DicomError as exc:
            group.problem = group.problem or exc
            group.first = group.first or ds
            continue
        if reason is not None:
            group.unusable.append((path, ds, reason))
            continue
        if not group.slices:
            group.first = ds
        group.slices.extend(slices)
    if len(ignored) == len(files):
        raise DicomError(root, f"holds no DICOM image series ({len(files)} file(s), none usable)")

    series: list[DicomSeries] = []
    skipped: list[SkippedSeries] = []

    def skip(uid: str, paths: list[Path], ds: Dataset, reason: str, is_image: bool,
             error: DicomError | None = None, n: int = 0, broken: bool = False) -> None:
        entry = SkippedSeries(
            uid=uid, folder=root, files=tuple(paths), reason=reason, is_image=is_image,
            description=str(ds.get("SeriesDescription", "") or ""), series_number=_series_number(ds),
            modality=str(ds.get("Modality", "") or ""), num_slices=n, error=error, broken=broken)
        prefix = f"{entry.label()}: "  # the error names the series; the entry does already
        skipped.append(replace(entry, reason=reason[len(prefix):]) if reason.startswith(prefix) else entry)

    for uid, group in groups.items():
        # Files that are no image with geometry: one entry per reason (a file without a
        # SeriesInstanceUID, e.g. DICOMDIR, is an entry of its own).
        by_reason: dict[str, list[tuple[Path, Dataset]]] = {}
        for path, ds, reason in group.unusable:
            by_reason.setdefault(reason if uid else f"{reason}\0{path}", []).append((path, ds))
        for key, items in by_reason.items():
            skip(uid, [p for p, _ in items], items[0][1], key.split("\0")[0], False)
        if group.problem is not None:
            paths = sorted({s.path for s in group.slices} | {group.problem.path or root})
            skip(uid, paths, group.first, group.problem.problem, True, group.problem,
                 len(group.slices))
            continue
        if not group.slices:
            continue
        assert group.first is not None
        paths = sorted({s.path for s in group.slices})
        if _is_localizer(group.slices):
            image_type = "\\".join(str(v) for v in group.first.get("ImageType", []))
            label = _series_label(_series_number(group.first),
                                  str(group.first.get("SeriesDescription", "") or ""), uid)
            error = DicomError(root, f"{label}: a localizer (ImageType {image_type}), not a volume")
            skip(uid, paths, group.first, error.problem, True, error, len(group.slices))
            continue
        try:
            s = _build_series(root, uid, group.slices)
        except DicomError as exc:
            skip(uid, paths, group.first, exc.problem, True, exc, len(group.slices),
                 broken=not isinstance(exc, _NotAVolume))
            continue
        series.append(replace(s, sop_class=_sop_class_name(group.first)))
    series.sort(key=_sort_key)
    skipped.sort(key=_sort_key)
    return StudyScan(folder=root, series=tuple(series), skipped=tuple(skipped),
                     ignored_files=tuple(ignored))


def _skip_line(s: SkippedSeries) -> str:
    if s.broken:
        return f"{s.folder}: error in {s.label()}, not converted: {s.reason}"
    return f"{s.folder}: skipped {s.label()}: {s.reason}"


def scan_study(folder: str | os.PathLike, *, notify: Notify | None = None) -> StudyScan:
    """Scan a study folder: every series that forms a volume, and every other one with a reason.

    Files are grouped by ``SeriesInstanceUID``; slices (single-frame files, or the frames of
    an enhanced multi-frame file) are ordered by position along the slice normal, never by
    file name. Each series that is not a volume -- a localizer, slices at one position, too
    few slices, a missing or duplicate slice, mixed orientations, no image geometry (a
    secondary capture such as a dose report), not an image (a structured report) -- is
    reported in one line (``notify``, else a :class:`DicomWarning`) and listed in
    :attr:`StudyScan.skipped`. Non-DICOM files are reported and ignored; hidden files are
    not read. Raises :class:`DicomError` only for the folder itself: not a folder, empty, no
    DICOM file, or a damaged DICOM file.

    >>> import tempfile
    >>> from spleen_helpers.data.phantom import write_phantom_study
    >>> study = write_phantom_study(Path(tempfile.mkdtemp()) / "study")
    >>> scan = scan_study(study, notify=lambda line: None)
    >>> [(s.series_number, s.num_slices) for s in scan.series], len(scan.skipped)
    ([(2, 12), (3, 23)], 2)
    """
    report = _notifier(notify)
    scan = _scan(Path(folder), report)
    for s in scan.skipped:
        report(_skip_line(s))
    return scan


def find_series(folder: str | os.PathLike, *, on_error: str = "raise",
                notify: Notify | None = None) -> list[DicomSeries]:
    """Scan ``folder`` recursively and return its DICOM series, each checked and slice-ordered.

    The strict form of :func:`scan_study`. With ``on_error="raise"`` (default) the first
    image series that is not one evenly spaced volume raises its one-line
    :class:`DicomError` naming the folder; files that are not images with geometry
    (DICOMDIR, reports, screenshots) and non-DICOM files are skipped with a line to
    ``notify`` (else a :class:`DicomWarning`). With ``on_error="skip"`` every series that is
    not a volume is reported and skipped (as :func:`scan_study` does). Raises
    :class:`DicomError` when no series is left. Series come back sorted by series number,
    description and UID.

    >>> find_series("/nonexistent")
    Traceback (most recent call last):
    ...
    spleen_helpers.ground.errors.DicomError: /nonexistent: is not a folder
    """
    if on_error not in ("raise", "skip"):
        raise DicomError(None, f"on_error must be 'raise' or 'skip', got {on_error!r}")
    report = _notifier(notify)
    scan = _scan(Path(folder), report)
    for s in scan.skipped:
        if on_error == "raise" and s.is_image and s.error is not None:
            raise s.error
    for s in scan.skipped:
        report(_skip_line(s))
    if not scan.series:
        reasons = "; ".join(f"{s.label()}: {s.reason}" for s in scan.skipped)
        raise DicomError(scan.folder, "holds no DICOM image series that forms a volume"
                                      + (f" ({reasons})" if reasons else ""))
    return list(scan.series)
