"""DICOM CT series: find and check, split into chunks, convert to NIfTI, read as HU.

The MONAI spleen tutorial groups DICOM files by globbing a folder, cuts them into groups of
``number_slices`` (dropping the remainder without a word) and converts each group with
dicom2nifti after switching its slice checks off. This module does the same job safely:

* :func:`find_series` reads every file's header (pixels are not read), groups files by
  ``SeriesInstanceUID`` and orders the slices by their position along the slice normal --
  never by file name. A series with a missing slice, duplicate positions, mixed orientation
  or pixel spacing, or slices that are not one stack is refused with a one-line
  :class:`~spleen_helpers.errors.DicomError` naming the folder.

  **Which checks are whose.** The course checks what it needs to order the slices and what
  dicom2nifti does not look at: readable geometry, pixel spacing and image size per slice,
  duplicate positions, one slice per file. Slice increment, orientation consistency and
  gantry tilt are dicom2nifti's rules, with dicom2nifti's tolerances, written nowhere in the
  course: :func:`find_series` calls dicom2nifti's own validators on the ordered headers of
  the whole series (before any chunking, so a gap between two chunks cannot slip through,
  and before :func:`load_series_hu`, which does not go through dicom2nifti) and turns their
  terse codes into a line naming the slices. :func:`convert_series` keeps dicom2nifti's
  validation on, so a series assembled by hand is held to the same rules.
* :func:`split_series` cuts a series into chunks of N slices, keeping (or, on request,
  dropping) the short last chunk and saying so.
* :func:`convert_series` / :func:`dicom_dir_to_nifti` write NIfTI with dicom2nifti, its
  validation kept on, atomically.
* :func:`load_series_hu` reads the pixels as Hounsfield units for display.

The phantom's DICOM writer, :func:`~spleen_helpers.synthetic.write_ct_series`, lives beside
the phantom.

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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from .errors import DicomError, quiet_logger
from .fileio import atomic_path

__all__ = [
    "DicomSeries",
    "ChunkPlan",
    "DicomWarning",
    "LPS_TO_RAS",
    "MIN_SLICES",
    "find_series",
    "split_series",
    "series_name",
    "convert_series",
    "dicom_dir_to_nifti",
    "load_series_hu",
]

#: dicom2nifti refuses fewer slices than this (``TOO_FEW_SLICES/LOCALIZER``).
MIN_SLICES = 4

# The course's own tolerances (dicom2nifti's checks bring their own, see the module docstring).
_DUPLICATE_MM = 1e-3      # two slices closer than this along the normal are one position
_SPACING_RTOL = 1e-4      # PixelSpacing must agree between slices
_UNIT_ATOL = 0.01         # ImageOrientationPatient must hold two perpendicular unit vectors

#: DICOM's patient frame (LPS) to NIfTI's (RAS): flip x and y; its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class DicomWarning(UserWarning):
    """Something in a DICOM folder was skipped or cut short; the rest was used."""


# ----------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series checked to form a single volume, slices ordered along the slice normal.

    ``positions`` are the slices' distances (mm) along ``normal`` (the cross product of the
    row and column direction cosines), ascending; ``files`` are in the same order.
    ``pixel_spacing`` is DICOM's (row spacing, column spacing); :attr:`spacing` is the voxel
    size in array order (column, row, slice) as NIfTI and nibabel use it.
    ``chunk`` is the 1-based chunk index when the series was cut by :func:`split_series`.
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
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm in array order: (column spacing, row spacing, slice step)."""
        return (self.pixel_spacing[1], self.pixel_spacing[0], self.slice_step)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape in nibabel order: (columns, rows, slices)."""
        return (self.columns, self.rows, self.num_slices)

    def affine(self) -> np.ndarray:
        """RAS voxel-to-world affine of the (column, row, slice) array of :func:`load_series_hu`."""
        row, col = np.array(self.orientation[:3]), np.array(self.orientation[3:])
        lps = np.eye(4)
        lps[:3, 0] = row * self.pixel_spacing[1]
        lps[:3, 1] = col * self.pixel_spacing[0]
        lps[:3, 2] = self.normal * self.slice_step
        lps[:3, 3] = self.origin
        return LPS_TO_RAS @ lps

    def label(self) -> str:
        """Short human-readable name for messages: number, description and UID tail."""
        parts = []
        if self.series_number is not None:
            parts.append(f"#{self.series_number}")
        if self.description:
            parts.append(repr(self.description))
        parts.append(f"uid ...{self.uid[-12:]}" if self.uid else "(no SeriesInstanceUID)")
        name = "series " + " ".join(parts)
        return name if self.chunk is None else f"{name} chunk {self.chunk}"


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


# ----------------------------------------------------------------------------- grouping
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


def _read_header(path: Path) -> pydicom.Dataset | None:
    """The header of a DICOM file, or None (with a warning) for anything that is not one."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        warnings.warn(f"{path}: not a DICOM file, skipped", DicomWarning, stacklevel=3)
        return None
    except Exception as exc:  # pydicom raises many types for damaged files
        if _has_dicm_magic(path):
            raise DicomError(path, f"is a damaged DICOM file ({type(exc).__name__}: {exc})") from exc
        warnings.warn(f"{path}: not a DICOM file, skipped", DicomWarning, stacklevel=3)
        return None


_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                  "Columns")


def _floats(value: Any, n: int, path: Path, tag: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise DicomError(path, f"{tag} is not numeric: {value!r}") from exc
    if len(out) != n or not all(np.isfinite(out)):
        raise DicomError(path, f"{tag} must have {n} finite values, got {value!r}")
    return out


def _dicom2nifti_checks(folder: Path, name: str, normal: np.ndarray,
                        slices: list[tuple[float, int, Path, np.ndarray, pydicom.Dataset]]) -> None:
    """Run dicom2nifti's own orientation, tilt and slice-increment validators on the ordered
    headers; turn a refusal into one line that names the slices at fault."""
    from dicom2nifti import common
    from dicom2nifti.exceptions import ConversionValidationError

    paths = [s[2] for s in slices]
    headers = [s[4] for s in slices]
    try:
        with quiet_logger("dicom2nifti"):
            common.validate_orientation(headers)
            common.validate_orthogonal(headers)
            common.validate_slice_increment(headers)
    except ConversionValidationError as exc:
        code = str(exc)
        if code == "IMAGE_ORIENTATION_INCONSISTENT":
            orients = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
            worst = int(np.abs(orients - orients[0]).max(axis=1).argmax())
            raise DicomError(folder, f"{name}: inconsistent orientation within the series: "
                                     f"{paths[worst].name} has {tuple(orients[worst])}, "
                                     f"{paths[0].name} has {tuple(orients[0])} [{code}]") from None
        if code == "NON_CUBICAL_IMAGE/GANTRY_TILT":
            run = slices[-1][3] - slices[0][3]
            cosine = abs(float(run @ normal) / float(np.linalg.norm(run)))
            angle = float(np.degrees(np.arccos(min(1.0, cosine))))
            raise DicomError(folder, f"{name}: slice positions run {angle:.1f} degrees off the slice "
                                     f"normal (gantry tilt or not one stack of slices) [{code}]") from None
        if code == "SLICE_INCREMENT_INCONSISTENT":
            dist = np.array([s[0] for s in slices])
            steps = np.diff(dist)
            typical = float(np.median(steps))
            i = int(np.abs(steps - typical).argmax())
            ratio = steps[i] / typical
            where = (f"between {dist[i]:.2f} and {dist[i + 1]:.2f} mm "
                     f"({paths[i].name} -> {paths[i + 1].name})")
            if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
                raise DicomError(folder, f"{name}: missing slice(s): a {steps[i]:.2f} mm step {where} "
                                         f"where the slice step is {typical:.2f} mm "
                                         f"(about {round(ratio) - 1} slice(s) missing) [{code}]") from None
            raise DicomError(folder, f"{name}: uneven slice spacing: a {steps[i]:.2f} mm step {where} "
                                     f"where the typical step is {typical:.2f} mm [{code}]") from None
        raise DicomError(folder, f"{name}: dicom2nifti refuses these slices [{code}]") from None


def _build_series(folder: Path, uid: str, items: list[tuple[Path, pydicom.Dataset]]) -> DicomSeries:
    """Check one SeriesInstanceUID group and order its slices along the normal."""
    first_path, first = items[0]
    name = f"series uid ...{uid[-12:]}" if uid else "series (no SeriesInstanceUID)"
    if first.get("SeriesDescription"):
        name += f" ({first.SeriesDescription})"
    orient = _floats(first.ImageOrientationPatient, 6, first_path, "ImageOrientationPatient")
    row, col = np.array(orient[:3]), np.array(orient[3:])
    if abs(np.linalg.norm(row) - 1) > _UNIT_ATOL or abs(np.linalg.norm(col) - 1) > _UNIT_ATOL \
            or abs(float(np.dot(row, col))) > _UNIT_ATOL:
        raise DicomError(first_path, f"ImageOrientationPatient {orient} is not two unit, "
                                     "perpendicular direction cosines")
    spacing = _floats(first.PixelSpacing, 2, first_path, "PixelSpacing")
    if min(spacing) <= 0:
        raise DicomError(first_path, f"PixelSpacing {spacing} must be positive")
    size = (int(first.Rows), int(first.Columns))
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)

    slices = []
    for path, ds in items:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise DicomError(path, "is a multi-frame DICOM image; only one slice per file is supported")
        _floats(ds.ImageOrientationPatient, 6, path, "ImageOrientationPatient")
        s = _floats(ds.PixelSpacing, 2, path, "PixelSpacing")
        if not np.allclose(s, spacing, rtol=_SPACING_RTOL, atol=0):
            raise DicomError(folder, f"{name}: inconsistent pixel spacing within the series: "
                                     f"{path.name} has {s}, {first_path.name} has {spacing}")
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise DicomError(folder, f"{name}: inconsistent image size within the series: "
                                     f"{path.name} is {ds.Rows}x{ds.Columns}, "
                                     f"{first_path.name} is {size[0]}x{size[1]}")
        pos = np.array(_floats(ds.ImagePositionPatient, 3, path, "ImagePositionPatient"))
        inst = ds.get("InstanceNumber")
        inst = int(inst) if str(inst or "").strip().lstrip("-").isdigit() else 0  # tie-break only
        slices.append((float(np.dot(pos, normal)), inst, path, pos, ds))
    slices.sort(key=lambda s: (s[0], s[1], str(s[2])))
    dist = np.array([s[0] for s in slices])
    n = len(slices)

    if n > 1 and dist[-1] - dist[0] <= _DUPLICATE_MM:
        raise DicomError(folder, f"{name}: all {n} slices lie at the same position "
                                 f"({dist[0]:.2f} mm along the slice normal): they do not form a volume")
    steps = np.diff(dist)
    for i in np.flatnonzero(steps <= _DUPLICATE_MM):
        raise DicomError(folder, f"{name}: duplicate slice position {dist[i]:.2f} mm "
                                 f"({slices[i][2].name} and {slices[i + 1][2].name}); the series may "
                                 "hold several acquisitions or echoes")
    _dicom2nifti_checks(folder, name, normal, slices)
    if n > 1:
        slice_step = float((dist[-1] - dist[0]) / (n - 1))
    else:
        # One slice has no step; use the stated spacing as dicom2nifti does (1 mm if none).
        slice_step = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)

    number = first.get("SeriesNumber")
    origin = slices[0][3]
    return DicomSeries(
        uid=uid, folder=folder, files=tuple(s[2] for s in slices),
        positions=tuple(float(d) for d in dist),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        orientation=orient,  # type: ignore[arg-type]
        pixel_spacing=(spacing[0], spacing[1]), slice_step=slice_step,
        rows=size[0], columns=size[1],
        description=str(first.get("SeriesDescription", "") or ""),
        series_number=int(number) if number not in (None, "") else None,
        modality=str(first.get("Modality", "") or ""),
        study_uid=str(first.get("StudyInstanceUID", "") or ""),
    )


def find_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """Scan ``folder`` recursively and return its DICOM series, each checked and slice-ordered.

    Files are grouped by ``SeriesInstanceUID``; slices are ordered by position along the
    slice normal, never by file name. Non-DICOM files, and DICOM files without image
    geometry (DICOMDIR, reports), are skipped with a :class:`DicomWarning` naming the file;
    hidden files are ignored. Raises :class:`DicomError` for an empty folder, a folder with
    no DICOM image, or a series that is not one evenly spaced volume. Series come back
    sorted by series number, description and UID.

    >>> find_series("/nonexistent")
    Traceback (most recent call last):
    ...
    spleen_helpers.errors.DicomError: /nonexistent: is not a folder
    """
    root = Path(folder)
    if not root.is_dir():
        raise DicomError(root, "is not a folder")
    files = list(_iter_files(root))
    if not files:
        raise DicomError(root, "is empty: no files to read")
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in files:
        ds = _read_header(path)
        if ds is None:
            continue
        if len(ds) == 0:  # pydicom reads a file cut off inside its header without complaint
            raise DicomError(path, "is a damaged DICOM file: nothing readable after the file header "
                                   "(truncated?)")
        missing = [t for t in _GEOMETRY_TAGS if t not in ds]
        if missing:
            warnings.warn(f"{path}: DICOM file without image geometry ({', '.join(missing)} "
                          "missing), skipped", DicomWarning, stacklevel=2)
            continue
        # Files without a SeriesInstanceUID (some anonymisers blank it) form one group; the
        # checks below refuse it if those files are not one volume.
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((path, ds))
    if not groups:
        raise DicomError(root, f"holds no DICOM image series ({len(files)} file(s), none usable)")
    series = [_build_series(root, uid, items) for uid, items in groups.items()]
    series.sort(key=lambda s: (s.series_number if s.series_number is not None else 1 << 30,
                               s.description, s.uid))
    return series


# ------------------------------------------------------------------------------ chunking
def _subseries(series: DicomSeries, start: int, stop: int, chunk: int) -> DicomSeries:
    # origin of the chunk = the series origin moved along the normal to slice ``start``
    origin = np.array(series.origin) + series.normal * (series.positions[start] - series.positions[0])
    return replace(series, files=series.files[start:stop], positions=series.positions[start:stop],
                   origin=tuple(float(v) for v in origin), chunk=chunk)


def split_series(series: DicomSeries, slices_per_group: int, *,
                 drop_remainder: bool = False) -> ChunkPlan:
    """Cut ``series`` into consecutive chunks of ``slices_per_group`` slices (in position order).

    Unlike the tutorial's ``int(len / number_slices)`` groups, the short last chunk is
    kept by default; either way a :class:`DicomWarning` says which chunk is short and
    whether it was kept or dropped, and the returned :class:`ChunkPlan` records it.

    >>> s = DicomSeries("1.2", Path("."), tuple(Path(f"{i}.dcm") for i in range(20)),
    ...                 tuple(2.0 * i for i in range(20)), (0.0, 0.0, 0.0),
    ...                 (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, 1.0), 2.0, 8, 8)
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     split_series(s, 8).sizes
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
        warnings.warn(f"{series.folder}: {plan.summary()}", DicomWarning, stacklevel=2)
    return plan


# ------------------------------------------------------------------------------- reading
def _read_slices(series: DicomSeries) -> list[pydicom.Dataset]:
    """Every file of ``series`` read in full, in slice order; DicomError naming a bad file."""
    datasets = []
    for path in series.files:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as exc:  # damaged after scanning, or unreadable
            raise DicomError(path, f"cannot be read: {type(exc).__name__}: {exc}") from exc
    return datasets


def _pixels(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    """The decoded pixel array of one slice; DicomError naming the file and its transfer syntax."""
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
def _dicom2nifti_validation_on() -> Iterator[None]:
    """Switch all of dicom2nifti's slice checks on (someone may have disabled them), then restore."""
    import dicom2nifti.settings as settings

    names = ["validate_slicecount", "validate_orientation", "validate_orthogonal",
             "validate_slice_increment"]
    saved = {n: getattr(settings, n) for n in names}
    for n in names:
        setattr(settings, n, True)
    try:
        yield
    finally:
        for n, v in saved.items():
            setattr(settings, n, v)


_DICOM2NIFTI_REASONS = {
    "SLICE_INCREMENT_INCONSISTENT": "slice spacing is not constant (missing or extra slices)",
    "TOO_FEW_SLICES/LOCALIZER": f"too few slices (needs at least {MIN_SLICES}; a localizer?)",
    "IMAGE_ORIENTATION_INCONSISTENT": "slices have different orientations",
    "NON_CUBICAL_IMAGE/GANTRY_TILT": "slices are not stacked straight (gantry tilt)",
    "NOT_A_VOLUME": "slices do not form a volume (all at one position)",
    "NON_IMAGING_DICOM_FILES": "files are not DICOM images",
}


def _compact_float_image(path: Path) -> None:
    """Re-save a float NIfTI as int16 when every voxel is a whole number in int16 range.

    dicom2nifti returns rescaled CT as float64 (8 bytes a voxel); HU values are integers, so
    int16 holds them exactly at a quarter of the size. Anything else is left as written.
    """
    import nibabel as nib

    img = nib.load(path)
    if not np.issubdtype(img.get_data_dtype(), np.floating):
        return
    data = np.asanyarray(img.dataobj)
    if data.size == 0 or not np.array_equal(data, np.round(data)) \
            or data.min() < -32768 or data.max() > 32767:
        return
    new = nib.Nifti1Image(data.astype(np.int16), img.affine, img.header)
    new.set_data_dtype(np.int16)
    new.header.set_slope_inter(1.0, 0.0)
    nib.save(new, path)


def convert_series(series: DicomSeries, out_path: str | os.PathLike, reorient: bool = True) -> Path:
    """Convert one series (or chunk) to a NIfTI file with dicom2nifti, validation on; atomic.

    With ``reorient=True`` (default) dicom2nifti stores the voxels along the patient axes
    (its LAS layout: no oblique or permuted axes left for later transforms to guess). Any
    dicom2nifti refusal becomes a one-line :class:`DicomError` naming the folder. Integral
    float output (rescaled CT) is stored as int16.

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
    datasets = _read_slices(series)
    try:
        with _dicom2nifti_validation_on(), quiet_logger("dicom2nifti"), atomic_path(out) as tmp:
            dicom_array_to_nifti(datasets, str(tmp), reorient_nifti=reorient)
            _compact_float_image(tmp)
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
    return out


def dicom_dir_to_nifti(in_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       slices_per_group: int | None = None, *, drop_remainder: bool = False,
                       reorient: bool = True) -> list[Path]:
    """Convert every series under ``in_dir`` (or every chunk of it) to ``out_dir/<name>.nii.gz``.

    All series and chunks are checked before anything is written, so a bad folder leaves
    ``out_dir`` untouched. With ``slices_per_group`` each series is cut by
    :func:`split_series` (short last chunk kept unless ``drop_remainder``; a warning says
    so); every chunk must hold at least :data:`MIN_SLICES` slices. Returns the written files.

    >>> import tempfile, warnings
    >>> from spleen_helpers.synthetic import write_ct_series
    >>> tmp = Path(tempfile.mkdtemp())
    >>> _ = write_ct_series(np.zeros((8, 8, 12), np.int16), np.eye(4), tmp / "in",
    ...                     series_description="CT abdomen")
    >>> with warnings.catch_warnings(record=True):
    ...     [p.name for p in dicom_dir_to_nifti(tmp / "in", tmp / "out", slices_per_group=8)]
    ['001_ct_abdomen_chunk01.nii.gz', '001_ct_abdomen_chunk02.nii.gz']
    """
    src, dst = Path(in_dir), Path(out_dir)
    if slices_per_group is not None and int(slices_per_group) < MIN_SLICES:
        raise DicomError(src, f"slices_per_group must be at least {MIN_SLICES} "
                              f"(dicom2nifti refuses smaller volumes), got {slices_per_group}")
    series = find_series(src)
    jobs: list[DicomSeries] = []
    for s in series:
        if slices_per_group is None:
            jobs.append(s)
            continue
        plan = split_series(s, int(slices_per_group), drop_remainder=drop_remainder)
        if not plan.chunks:
            raise DicomError(src, f"{plan.summary()}: nothing left to convert")
        jobs.extend(plan.chunks)
    for job in jobs:
        if job.num_slices < MIN_SLICES:
            hint = ("; choose another slices_per_group or drop the remainder"
                    if job.chunk is not None else "")
            raise DicomError(src, f"{job.label()} has only {job.num_slices} slice(s); conversion "
                                  f"needs at least {MIN_SLICES}{hint}")
    names = [series_name(j) for j in jobs]
    for i, j in enumerate(jobs):  # two series with the same number and description
        if names.count(names[i]) > 1:
            names[i] += "_" + hashlib.sha1(j.uid.encode()).hexdigest()[:8]
    return [convert_series(j, dst / f"{n}.nii.gz", reorient=reorient) for j, n in zip(jobs, names)]


def load_series_hu(series: DicomSeries) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a series' pixels as rescaled values (HU for CT) and a dict of its key tags.

    The array is in nibabel order (columns, rows, slices) with slices in position order, so
    ``series.affine()`` maps its voxels to RAS millimetres. Values are int16 when the
    rescale keeps them whole numbers in range, else float32. Compressed transfer syntaxes
    (JPEG 2000, RLE, ...) are decoded by pydicom's pixel handlers (pylibjpeg).

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
    syntax = first.file_meta.get("TransferSyntaxUID")
    tags: dict[str, Any] = {
        "PatientID": str(first.get("PatientID", "")),
        "Modality": series.modality,
        "Manufacturer": str(first.get("Manufacturer", "")),
        "SeriesNumber": series.series_number,
        "SeriesDescription": series.description,
        "SeriesInstanceUID": series.uid,
        "TransferSyntax": getattr(syntax, "name", str(syntax)),
        "Rows": series.rows,
        "Columns": series.columns,
        "PixelSpacing (row, col) mm": series.pixel_spacing,
        "SliceThickness mm": float(first.SliceThickness) if first.get("SliceThickness") else None,
        "slice step mm": series.slice_step,
        "slices": series.num_slices,
        "ImageOrientationPatient": series.orientation,
        "ImagePositionPatient (first slice)": series.origin,
        "RescaleSlope": float(first.get("RescaleSlope", 1) or 1),
        "RescaleIntercept": float(first.get("RescaleIntercept", 0) or 0),
    }
    return vol, tags
