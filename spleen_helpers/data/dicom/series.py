"""What a DICOM scan finds: series that form a volume, series it skipped, and their table.

Example:
    >>> LPS_TO_RAS.diagonal().tolist()
    [-1.0, -1.0, 1.0, 1.0]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ...ground.errors import DicomError

__all__ = [
    "MIN_SLICES", "MAX_TILT_DEG", "LPS_TO_RAS", "Notify", "DicomWarning", "DicomSeries",
    "SkippedSeries", "StudyScan", "ChunkPlan"
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


_DICOM2NIFTI_REASONS = {
    "SLICE_INCREMENT_INCONSISTENT": "slice spacing is not constant (missing or extra slices)",
    "TOO_FEW_SLICES/LOCALIZER": f"too few slices (needs at least {MIN_SLICES}; a localizer?)",
    "IMAGE_ORIENTATION_INCONSISTENT": "slices have different orientations",
    "NON_CUBICAL_IMAGE/GANTRY_TILT": "slices are not stacked straight (gantry tilt)",
    "NOT_A_VOLUME": "slices do not form a volume (all at one position)",
    "NON_IMAGING_DICOM_FILES": "files are not DICOM images",
}


@dataclass
class _Slice:
    """One slice: a single-frame file, or one frame of a multi-frame file, with its header."""

    path: Path
    frame: int | None
    header: Dataset

    @property
    def name(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"


def _series_number(ds: Dataset) -> int | None:
    number = ds.get("SeriesNumber")
    return int(number) if number not in (None, "") else None
