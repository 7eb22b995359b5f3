"""DICOM CT: scan study folders, check series, choose one, convert to NIfTI, read as HU.

The course's source guide (*Guide on 3D Medical Image Segmentation with Monai & UNET*,
linked in the README) groups DICOM files by globbing a folder, cuts them into groups of
``number_slices`` (dropping the remainder without a word) and converts each group with
dicom2nifti after switching its slice checks off. This module does the same job safely, on
folders as a PACS exports them (a CT series beside a localizer, a dose report, several
reconstructions):

* :func:`scan_study` reads every file's header (pixels are not read), groups the files by
  ``SeriesInstanceUID``, orders each series' slices by their position along the slice
  normal -- never by file name -- and checks that they form one evenly spaced volume. It
  returns a :class:`StudyScan`: the series that are volumes, and every other series with
  the reason it was skipped (a localizer, slices at one position, too few slices, no image
  geometry, not an image at all such as a structured report, a missing slice, ...). Each
  skipped series is reported in one line. :func:`find_series` is the strict form: by
  default the first image series that is not a volume raises its one-line
  :class:`~spleen_helpers.errors.DicomError`.

  **Which checks are whose.** The course checks what it needs to order the slices and what
  dicom2nifti does not look at: readable geometry, pixel spacing and image size per slice,
  duplicate positions. Slice increment, orientation consistency and gantry tilt are
  dicom2nifti's rules, with dicom2nifti's tolerances, written nowhere in the course: the
  scan calls dicom2nifti's own validators on the ordered headers of the whole series
  (before any chunking, so a gap between two chunks cannot slip through, and before
  :func:`load_series_hu`, which does not go through dicom2nifti) and turns their terse
  codes into a line naming the slices. :func:`convert_series` keeps dicom2nifti's
  validation on, so a series assembled by hand is held to the same rules.
* **Multi-frame images** (enhanced and legacy-converted enhanced CT/MR: one file holding
  every slice) are read frame by frame from their functional groups (position,
  orientation, pixel spacing, rescale; per-frame values first, then the shared ones) and
  then checked, ordered and converted exactly like single-frame series, so both give the
  same voxels and affine. dicom2nifti's own multi-frame reader is not used: version 2.6
  ignores a rescale held in the shared functional groups (a legacy-converted phantom CT came
  out 1024 HU too bright) and refuses frames stored out of position order
  (``SLICE_INCREMENT_INCONSISTENT``); the frames go to its single-frame converter instead.
* **Gantry tilt** (slices stacked off their normal) is recorded by the scan
  (:attr:`DicomSeries.tilt_deg`); :func:`convert_series` resamples such a series onto a
  regular grid with dicom2nifti and says so, or refuses it with ``tilt_correction=False``.
* :func:`choose_ct_series` is the documented rule for picking the series to segment (axial
  CT volumes only; the most slices; ties broken by the thinnest slice step);
  :func:`select_series` also takes an explicit series number or UID.
* :func:`split_series` cuts a series into chunks of N slices, keeping (or, on request,
  dropping) the short last chunk and saying so.
* :func:`convert_series` writes one series with dicom2nifti, atomically;
  :func:`convert_study` / :func:`dicom_dir_to_nifti` convert every volume of a folder, one
  NIfTI each, skip or fail series one by one (never leaving a half-written series) and
  report every series in a table.
* :func:`load_series_hu` reads the pixels as Hounsfield units for display.

Messages about skipped or resampled series go to ``notify`` when a function is given one
(notebooks pass ``print``), else they are :class:`DicomWarning` warnings.

The phantom's DICOM writers (:func:`~spleen_helpers.synthetic.write_ct_series`,
:func:`~spleen_helpers.synthetic.write_phantom_study`) live beside the phantom.

Example:
    >>> import tempfile
    >>> from spleen_helpers.synthetic import PhantomSpec, generate_case, write_ct_series
    >>> spec = PhantomSpec(shape=(16, 16, 6))
    >>> image, _, affine = generate_case(0, spec)
    >>> tmp = Path(tempfile.mkdtemp())
    >>> files = write_ct_series(image, affine, tmp / "dicom")
    >>> [s.num_slices for s in find_series(tmp / "dicom")]
    [6]
    >>> hu, tags = load_series_hu(find_series(tmp / "dicom")[0])
    >>> bool((hu == image).all()), tags["Modality"]
    (True, 'CT')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError

from .errors import DicomError, quiet_logger
from .fileio import atomic_path

__all__ = [
    "DicomSeries",
    "SkippedSeries",
    "StudyScan",
    "ChunkPlan",
    "SeriesOutcome",
    "StudyConversion",
    "DicomWarning",
    "Notify",
    "LPS_TO_RAS",
    "MIN_SLICES",
    "MAX_TILT_DEG",
    "scan_study",
    "find_series",
    "choose_ct_series",
    "select_series",
    "split_series",
    "series_name",
    "convert_series",
    "convert_study",
    "dicom_dir_to_nifti",
    "load_series_hu",
]

#: dicom2nifti refuses fewer slices than this (``TOO_FEW_SLICES/LOCALIZER``).
MIN_SLICES = 4

#: Slices stacked further than this off their normal are not a tilted stack but something
#: else (CT gantries tilt by up to about 30 degrees).
MAX_TILT_DEG = 45.0

# The course's own tolerances (dicom2nifti's checks bring their own, see the module docstring).
_DUPLICATE_MM = 1e-3      # two slices closer than this along the normal are one position
_SPACING_RTOL = 1e-4      # PixelSpacing must agree between slices
_UNIT_ATOL = 0.01         # ImageOrientationPatient must hold two perpendicular unit vectors

#: DICOM's patient frame (LPS) to NIfTI's (RAS): flip x and y; its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Receives one line per skipped series, resampled series or short chunk (e.g. ``print``).
Notify = Callable[[str], None]


class DicomWarning(UserWarning):
    """Something in a DICOM folder was skipped or cut short; the rest was used."""


def _notifier(notify: Notify | None) -> Notify:
    """``notify`` itself, or a function that issues each line as a :class:`DicomWarning`."""
    if notify is not None:
        return notify

    def warn(message: str) -> None:
        warnings.warn(message, DicomWarning, stacklevel=3)

    return warn


def _series_label(number: int | None, description: str, uid: str, chunk: int | None = None) -> str:
    """``series #3 'CT Abdomen' uid ...123456789012`` (+ `` chunk 2``)."""
    parts = []
    if number is not None:
        parts.append(f"#{number}")
    if description:
        parts.append(repr(description))
    parts.append(f"uid ...{uid[-12:]}" if uid else "(no SeriesInstanceUID)")
    name = "series " + " ".join(parts)
    return name if chunk is None else f"{name} chunk {chunk}"


# ----------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series checked to form a single volume, slices ordered along the slice normal.

    ``positions`` are the slices' distances (mm) along ``normal`` (the cross product of the
    row and column direction cosines), ascending; ``files`` are in the same order.
    ``pixel_spacing`` is DICOM's (row spacing, column spacing); :attr:`spacing` is the voxel
    size in array order (column, row, slice) as NIfTI and nibabel use it.
    ``chunk`` is the 1-based chunk index when the series was cut by :func:`split_series`.
    ``frames`` is empty for single-frame files; for a multi-frame file it holds each
    slice's 0-based frame index (``files`` then repeats the file's path).
    ``step_vector`` is the LPS displacement (mm) from one slice to the next, as the
    positions give it (None: ``normal * slice_step``). ``tilt_deg`` is the angle between it
    and the normal when dicom2nifti's orthogonality check refuses the stack (gantry tilt),
    else 0.0.
    """

    uid: str
    folder: Path
    files: tuple[Path, ...]
    positions: tuple[float, ...]
    origin: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    slice_step: float
    rows: int
    columns: int
    description: str = ""
    series_number: int | None = None
    modality: str = ""
    study_uid: str = ""
    chunk: int | None = None
    frames: tuple[int, ...] = ()
    step_vector: tuple[float, float, float] | None = None
    tilt_deg: float = 0.0
    sop_class: str = ""

    @property
    def num_slices(self) -> int:
        return len(self.files)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal (LPS), row cosine x column cosine."""
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        n = np.cross(row, col)
        return n / np.linalg.norm(n)

    @property
    def step(self) -> np.ndarray:
        """LPS displacement (mm) from one slice to the next."""
        if self.step_vector is not None:
            return np.array(self.step_vector)
        return self.normal * self.slice_step

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm in array order: (column spacing, row spacing, slice step)."""
        return (self.pixel_spacing[1], self.pixel_spacing[0], self.slice_step)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape in nibabel order: (columns, rows, slices)."""
        return (self.columns, self.rows, self.num_slices)

    @property
    def is_axial(self) -> bool:
        """True when the slice normal runs closest to the patient's head-foot axis."""
        return int(np.argmax(np.abs(self.normal))) == 2

    @property
    def is_multiframe(self) -> bool:
        return bool(self.frames)

    def affine(self) -> np.ndarray:
        """RAS voxel-to-world affine of the (column, row, slice) array of :func:`load_series_hu`.

        For a tilted series the slice axis follows the positions, so the affine is sheared
        (the slices as acquired); :func:`convert_series` resamples them onto a regular grid.
        """
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        lps = np.eye(4)
        lps[:3, 0] = row * self.pixel_spacing[1]
        lps[:3, 1] = col * self.pixel_spacing[0]
        lps[:3, 2] = self.step
        lps[:3, 3] = self.origin
        return LPS_TO_RAS @ lps

    def label(self) -> str:
        """Short human-readable name for messages: number, description and UID tail."""
        return _series_label(self.series_number, self.description, self.uid, self.chunk)

    def summary(self) -> str:
        """One line: label, slices, voxel size, and tilt or multi-frame when they apply."""
        extra = ""
        if self.tilt_deg:
            extra += f", gantry tilt {self.tilt_deg:.1f} deg"
        if self.frames:
            extra += ", multi-frame"
        size = " x ".join(f"{v:.3g}" for v in self.spacing)
        return (f"{self.label()}: {self.modality or '?'} {self.num_slices} slices of "
                f"{self.columns} x {self.rows}, voxels {size} mm{extra}")


class _NotAVolume(DicomError):
    """Slices that do not form a volume at all (one position, too few): skipped, not an error."""


@dataclass(frozen=True)
class SkippedSeries:
    """A series (or a group of files) that does not form a volume, and why.

    ``is_image`` is False for files that are not images with geometry (structured reports,
    secondary captures, DICOMDIR): :func:`find_series` skips those even in its strict mode.
    ``error`` is the :class:`DicomError` the strict mode raises for an image series.
    ``broken`` is True for an image series that would be a volume but for a fault in it (a
    missing or duplicate slice, uneven spacing, mixed orientations or sizes): an error for that
    series, where a localizer or a dose report is simply not a volume.
    """

    uid: str
    folder: Path
    files: tuple[Path, ...]
    reason: str
    is_image: bool
    description: str = ""
    series_number: int | None = None
    modality: str = ""
    num_slices: int = 0
    error: DicomError | None = field(default=None, compare=False, repr=False)
    broken: bool = False

    def label(self) -> str:
        if not self.uid and len(self.files) == 1:
            return f"file {self.files[0].name}"
        return _series_label(self.series_number, self.description, self.uid)


def _sort_key(s: DicomSeries | SkippedSeries) -> tuple:
    return (s.series_number if s.series_number is not None else 1 << 30, s.description, s.uid)


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A plain-text table, columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        lines.append("  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip())
    return "\n".join(lines)


def _row(s: DicomSeries | SkippedSeries, result: str) -> tuple[str, ...]:
    number = f"#{s.series_number}" if s.series_number is not None else f"...{s.uid[-8:]}" if s.uid else "-"
    desc = s.description if len(s.description) <= 28 else s.description[:27] + "~"
    return (number, desc, s.modality or "-", str(s.num_slices) if s.num_slices else "-", result)


_TABLE_HEADER = ("series", "description", "modality", "slices", "result")


@dataclass(frozen=True)
class StudyScan:
    """What :func:`scan_study` found in a folder: the volumes, and everything else with a reason."""

    folder: Path
    series: tuple[DicomSeries, ...]
    skipped: tuple[SkippedSeries, ...]
    ignored_files: tuple[Path, ...] = ()   # files that are not DICOM at all

    def table(self) -> str:
        """Every series in series-number order: a volume, or skipped and why."""
        rows = []
        for s in sorted([*self.series, *self.skipped], key=_sort_key):
            if isinstance(s, DicomSeries):
                result = "volume" + (f", gantry tilt {s.tilt_deg:.1f} deg" if s.tilt_deg else "")
            else:
                result = f"{'failed' if s.broken else 'skipped'}: {s.reason}"
            rows.append(_row(s, result))
        return _table(rows, _TABLE_HEADER)


@dataclass(frozen=True)
class ChunkPlan:
    """How :func:`split_series` cut one series: the chunks and what happened to the remainder."""

    series: DicomSeries
    slices_per_group: int
    chunks: tuple[DicomSeries, ...]
    remainder: int   # slices in the short last chunk (0 when the series divides evenly)
    dropped: bool    # True when that short chunk was dropped instead of kept

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(c.num_slices for c in self.chunks)

    def summary(self) -> str:
        """One line describing the split, e.g. ``20 slices in groups of 8 -> 8, 8, 4 (...)``."""
        head = (f"{self.series.label()}: {self.series.num_slices} slices in groups of "
                f"{self.slices_per_group} -> {', '.join(map(str, self.sizes)) or 'no chunks'}")
        if not self.remainder:
            return head
        n_full = self.series.num_slices // self.slices_per_group
        if self.dropped:
            return (f"{head}; the last {self.remainder} slice(s) (a short chunk {n_full + 1}) "
                    f"were DROPPED and are not converted")
        return f"{head}; chunk {n_full + 1} is short ({self.remainder} slices), kept"


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


@dataclass
class _Slice:
    """One slice: a single-frame file, or one frame of a multi-frame file, with its header."""

    path: Path
    frame: int | None
    header: Dataset

    @property
    def name(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"


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


def _is_localizer(slices: list[_Slice]) -> bool:
    return all("LOCALIZER" in [str(v).upper() for v in s.header.get("ImageType", [])] for s in slices)


def _series_number(ds: Dataset) -> int | None:
    number = ds.get("SeriesNumber")
    return int(number) if number not in (None, "") else None


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
    >>> from spleen_helpers.synthetic import write_phantom_study
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
    spleen_helpers.errors.DicomError: /nonexistent: is not a folder
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


# ------------------------------------------------------------------------ choosing one
def choose_ct_series(series: Sequence[DicomSeries]) -> DicomSeries:
    """The series to segment: the documented rule of ``predict`` and the notebooks.

    Only axial CT volumes count (``Modality`` CT, slice normal closest to the head-foot
    axis); of those, the one with the most slices; ties go to the thinnest slice step, then
    to the lowest series number. Raises a one-line :class:`DicomError` when there is none.

    >>> a = DicomSeries("1.1", Path("s"), (Path("a"),) * 40, tuple(range(40)), (0., 0., 0.),
    ...                 (1., 0., 0., 0., 1., 0.), (1., 1.), 1.0, 8, 8, modality="CT",
    ...                 series_number=2)
    >>> b = replace(a, uid="1.2", series_number=3, slice_step=0.5)
    >>> choose_ct_series([a, b]).series_number
    3
    """
    candidates = [s for s in series if s.modality.upper() == "CT" and s.is_axial]
    if not candidates:
        folder = series[0].folder if series else None
        found = "; ".join(f"{s.label()} ({s.modality or 'no modality'}, "
                          f"{'axial' if s.is_axial else 'not axial'})" for s in series)
        raise DicomError(folder, f"no axial CT volume to segment among {len(series)} series"
                                 + (f": {found}" if found else ""))
    return min(candidates, key=lambda s: (-s.num_slices, round(s.slice_step, 4),
                                          s.series_number if s.series_number is not None else 1 << 30,
                                          s.uid))


def select_series(found: StudyScan | Sequence[DicomSeries], key: str | int | None = None) -> DicomSeries:
    """The series ``key`` names (its SeriesInstanceUID or series number), or by default the
    one :func:`choose_ct_series` picks. A one-line :class:`DicomError` says why when ``key``
    matches nothing, several series, or a series that was skipped.

    >>> a = DicomSeries("1.2.3", Path("s"), (Path("a"),) * 8, tuple(range(8)), (0., 0., 0.),
    ...                 (1., 0., 0., 0., 1., 0.), (1., 1.), 1.0, 8, 8, series_number=4)
    >>> select_series([a], "4").uid, select_series([a], "1.2.3").series_number
    ('1.2.3', 4)
    """
    series = list(found.series) if isinstance(found, StudyScan) else list(found)
    skipped = list(found.skipped) if isinstance(found, StudyScan) else []
    folder = found.folder if isinstance(found, StudyScan) else (series[0].folder if series else None)
    if key is None or str(key).strip() == "":
        return choose_ct_series(series)
    text = str(key).strip()

    def matches(s: DicomSeries | SkippedSeries) -> bool:
        return s.uid == text or (text.isdigit() and s.series_number == int(text))

    hits = [s for s in series if matches(s)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DicomError(folder, f"{len(hits)} series have number {text} "
                                 f"({'; '.join(s.label() for s in hits)}); give the SeriesInstanceUID")
    for s in skipped:
        if matches(s):
            raise DicomError(folder, f"{s.label()} was skipped: {s.reason}")
    known = ", ".join(f"#{s.series_number}" if s.series_number is not None else s.uid for s in series)
    raise DicomError(folder, f"no series with number or SeriesInstanceUID {text}; the volumes "
                             f"here are: {known or 'none'}")


# ------------------------------------------------------------------------------ chunking
def _subseries(series: DicomSeries, start: int, stop: int, chunk: int) -> DicomSeries:
    # origin of the chunk = the series origin moved ``start`` slice steps along the stack
    origin = np.array(series.origin) + series.step * start
    return replace(series, files=series.files[start:stop], positions=series.positions[start:stop],
                   frames=series.frames[start:stop] if series.frames else (),
                   origin=tuple(float(v) for v in origin), chunk=chunk)


def split_series(series: DicomSeries, slices_per_group: int, *, drop_remainder: bool = False,
                 notify: Notify | None = None) -> ChunkPlan:
    """Cut ``series`` into consecutive chunks of ``slices_per_group`` slices (in position order).

    Unlike the source guide's ``int(len / number_slices)`` groups, the short last chunk is
    kept by default; either way a line (``notify``, else a :class:`DicomWarning`) says
    which chunk is short and whether it was kept or dropped, and the returned
    :class:`ChunkPlan` records it.

    >>> s = DicomSeries("1.2", Path("."), tuple(Path(f"{i}.dcm") for i in range(20)),
    ...                 tuple(2.0 * i for i in range(20)), (0.0, 0.0, 0.0),
    ...                 (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, 1.0), 2.0, 8, 8)
    >>> split_series(s, 8, notify=print).sizes
    .: series uid ...1.2: 20 slices in groups of 8 -> 8, 8, 4; chunk 3 is short (4 slices), kept
    (8, 8, 4)
    """
    if int(slices_per_group) < 1:
        raise DicomError(series.folder, f"slices_per_group must be >= 1, got {slices_per_group}")
    size = int(slices_per_group)
    n_full, remainder = divmod(series.num_slices, size)
    bounds = [(i * size, (i + 1) * size) for i in range(n_full)]
    if remainder and not drop_remainder:
        bounds.append((n_full * size, series.num_slices))
    chunks = tuple(_subseries(series, a, b, k + 1) for k, (a, b) in enumerate(bounds))
    plan = ChunkPlan(series=series, slices_per_group=size, chunks=chunks, remainder=remainder,
                     dropped=bool(remainder and drop_remainder))
    if remainder:
        _notifier(notify)(f"{series.folder}: {plan.summary()}")
    return plan


# ------------------------------------------------------------------------------- reading
_SINGLE_FRAME_CLASS = {"CT": pydicom.uid.CTImageStorage, "MR": pydicom.uid.MRImageStorage,
                       "PT": pydicom.uid.PositronEmissionTomographyImageStorage}


def _frame_dataset(ds: Dataset, index: int, pixels: np.ndarray, instance_number: int) -> Dataset:
    """Frame ``index`` of a multi-frame image as a stand-alone single-frame image.

    Its header comes from the functional groups (:func:`_frame_header`), its pixels are
    the decoded frame stored uncompressed, its SOP class the single-frame class of its
    modality: dicom2nifti's single-frame converter then treats it like any CT slice.
    ``instance_number`` is the slice's rank in position order (dicom2nifti reads stacks in
    instance-number order and would take frames stored out of order for several stacks).
    """
    h = _frame_header(ds, index)
    h.InstanceNumber = instance_number
    sop_class = _SINGLE_FRAME_CLASS.get(str(h.get("Modality", "")), pydicom.uid.SecondaryCaptureImageStorage)
    h.file_meta = FileMetaDataset()
    h.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    h.file_meta.MediaStorageSOPClassUID = sop_class
    h.SOPClassUID = sop_class
    h.PixelData = np.ascontiguousarray(pixels[index]).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return h


def _read_slices(series: DicomSeries) -> list[Dataset]:
    """Every slice of ``series`` read in full, in slice order; DicomError naming a bad file.

    The frames of a multi-frame file come back as single-frame datasets (pixels decoded
    once per file).
    """
    datasets: list[Dataset] = []
    decoded: dict[Path, tuple[Dataset, np.ndarray]] = {}
    for i, path in enumerate(series.files):
        if path not in decoded or not series.frames:
            try:
                ds = pydicom.dcmread(path)
            except Exception as exc:  # damaged after scanning, or unreadable
                raise DicomError(path, f"cannot be read: {type(exc).__name__}: {exc}") from exc
            if not series.frames:
                datasets.append(ds)
                continue
            frames = _pixels(path, ds)
            decoded[path] = (ds, frames.reshape((-1, *frames.shape[-2:])))
        ds, frames = decoded[path]
        datasets.append(_frame_dataset(ds, series.frames[i], frames, i + 1))
    return datasets


def _pixels(path: Path, ds: Dataset) -> np.ndarray:
    """The decoded pixel array of one file; DicomError naming the file and its transfer syntax."""
    try:
        return ds.pixel_array
    except Exception as exc:  # missing decoder plugin, corrupt compressed stream, ...
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise DicomError(path, f"pixel data cannot be decoded (transfer syntax "
                               f"{getattr(syntax, 'name', syntax)}): {exc}") from exc


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


_DICOM2NIFTI_REASONS = {
    "SLICE_INCREMENT_INCONSISTENT": "slice spacing is not constant (missing or extra slices)",
    "TOO_FEW_SLICES/LOCALIZER": f"too few slices (needs at least {MIN_SLICES}; a localizer?)",
    "IMAGE_ORIENTATION_INCONSISTENT": "slices have different orientations",
    "NON_CUBICAL_IMAGE/GANTRY_TILT": "slices are not stacked straight (gantry tilt)",
    "NOT_A_VOLUME": "slices do not form a volume (all at one position)",
    "NON_IMAGING_DICOM_FILES": "files are not DICOM images",
}


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
    >>> from spleen_helpers.synthetic import write_ct_series
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
    >>> from spleen_helpers.synthetic import write_phantom_study
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
    >>> from spleen_helpers.synthetic import write_ct_series
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


def load_series_hu(series: DicomSeries) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a series' pixels as rescaled values (HU for CT) and a dict of its key tags.

    The array is in nibabel order (columns, rows, slices) with slices in position order, so
    ``series.affine()`` maps its voxels to RAS millimetres (sheared for a gantry-tilted
    series: the slices as acquired). Values are int16 when the rescale keeps them whole
    numbers in range, else float32. Compressed transfer syntaxes (JPEG 2000, RLE, ...) are
    decoded by pydicom's pixel handlers (pylibjpeg); multi-frame files frame by frame.

    >>> import tempfile
    >>> from spleen_helpers.synthetic import write_ct_series
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = write_ct_series(np.full((6, 4, 5), 40, np.int16), np.eye(4), tmp)
    >>> hu, tags = load_series_hu(find_series(tmp)[0])
    >>> hu.shape, int(hu.max()), tags["RescaleIntercept"]
    ((6, 4, 5), 40, -1024.0)
    """
    from pydicom.pixels import apply_rescale

    slices = []
    datasets = _read_slices(series)
    for path, ds in zip(series.files, datasets):
        arr = _pixels(path, ds)
        if arr.ndim != 2:
            raise DicomError(path, f"expected one grey-level slice, got pixel array {arr.shape}")
        # float32 holds every integer HU exactly and halves the memory of float64
        slices.append(np.asarray(apply_rescale(arr, ds), dtype=np.float32).T)
    vol = np.stack(slices, axis=-1)
    whole = np.array_equal(vol, np.round(vol)) and vol.min() >= -32768 and vol.max() <= 32767
    vol = vol.astype(np.int16 if whole else np.float32)
    first = datasets[0]
    header = pydicom.dcmread(series.files[0], stop_before_pixels=True)  # the file as stored
    syntax = header.file_meta.get("TransferSyntaxUID")
    thickness = first.get("SliceThickness")
    tags: dict[str, Any] = {
        "PatientID": str(header.get("PatientID", "")),
        "Modality": series.modality,
        "Manufacturer": str(header.get("Manufacturer", "")),
        "SeriesNumber": series.series_number,
        "SeriesDescription": series.description,
        "SeriesInstanceUID": series.uid,
        "SOP class": _sop_class_name(header),
        "TransferSyntax": getattr(syntax, "name", str(syntax)),
        "Rows": series.rows,
        "Columns": series.columns,
        "PixelSpacing (row, col) mm": series.pixel_spacing,
        "SliceThickness mm": float(thickness) if thickness else None,
        "slice step mm": series.slice_step,
        "slices": series.num_slices,
        "frames per file": len(series.frames) // len(set(series.files)) if series.frames else 1,
        "gantry tilt deg": round(series.tilt_deg, 2),
        "ImageOrientationPatient": series.orientation,
        "ImagePositionPatient (first slice)": series.origin,
        "RescaleSlope": float(first.get("RescaleSlope", 1) or 1),
        "RescaleIntercept": float(first.get("RescaleIntercept", 0) or 0),
    }
    return vol, tags
