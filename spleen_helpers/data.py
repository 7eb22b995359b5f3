"""Find, check, list, split and download the spleen CT data set (MSD Task09 layout).

The Medical Segmentation Decathlon layout is a folder with ``dataset.json``, ``imagesTr/``
and ``labelsTr/``; ``dataset.json`` lists the training cases as
``{"image": "./imagesTr/spleen_19.nii.gz", "label": "./labelsTr/spleen_19.nii.gz"}``.
The real data (:func:`download_msd_spleen`) and the synthetic phantom
(:mod:`spleen_helpers.synthetic`) share it, so every function here works on both.

Every problem with the data raises a one-line :class:`~spleen_helpers.errors.DataError`
naming the file and what is wrong, before MONAI ever sees the file.

Case order: :func:`load_datalist` sorts cases by image file name with plain ``sorted()``
(lexicographic, so ``spleen_10`` comes before ``spleen_2``), exactly as MONAI's spleen
tutorial does with ``sorted(glob(...))``; :func:`split_datalist` then keeps the last
``val_count`` cases for validation, so the default split is the tutorial's.

Example:
    >>> from spleen_helpers.synthetic import write_synthetic_dataset
    >>> from spleen_helpers.config import CourseConfig
    >>> import tempfile
    >>> root = write_synthetic_dataset(tempfile.mkdtemp(), num_cases=5, seed=0)
    >>> files = load_datalist(root)
    >>> train, val = split_datalist(files, CourseConfig.synthetic(val_count=2))
    >>> len(train), len(val), sorted(files[0])
    (3, 2, ['image', 'label'])
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import sys
import sysconfig
import urllib.error
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from .anatomy import SideSurvey, SpleenSide, spleen_side
from .config import PACKAGE_DIR, CourseConfig
from .errors import ConfigError, DataError, quiet_logger
from .fileio import file_md5, staging_dir

__all__ = [
    "AFFINE_TOLERANCE_MM",
    "NIFTI_SUFFIXES",
    "voxel_spacing",
    "CaseInfo",
    "case_name",
    "check_same_grid",
    "header_disagreement",
    "side_survey",
    "open_nifti",
    "volume_ml",
    "MSD_SPLEEN_MD5",
    "MSD_SPLEEN_TASK",
    "MSD_SPLEEN_URL",
    "SampleCT",
    "sample_ct",
    "download_msd_spleen",
    "find_dataset",
    "load_datalist",
    "load_test_cases",
    "split_datalist",
    "validate_case",
    "validate_dataset",
]

MSD_SPLEEN_TASK = "Task09_Spleen"
# The archive and checksum MONAI's DecathlonDataset uses for Task09_Spleen
# (monai.apps.DecathlonDataset.resource / .md5).
MSD_SPLEEN_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task09_Spleen.tar"
MSD_SPLEEN_MD5 = "410d4a301da4e5b2f6f86ec3ddba524e"

AFFINE_TOLERANCE_MM = 1e-3
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LAYOUT = "expected the MSD layout: dataset.json, imagesTr/, labelsTr/"

#: Where the real sample CT lives: ``data/<this>`` in a checkout, ``<prefix>/share/spleen-course/
#: <this>`` for an installed package (pyproject.toml's ``data-files``).
SAMPLE_CT_SUBDIR = Path("samples") / "totalsegmentator"


# ------------------------------------------------------------------------------ find / list
@dataclass(frozen=True)
class SampleCT:
    """The real abdominal CT committed with the course (TotalSegmentator's example files).

    ``dicom_dir``: 20 JPEG 2000 DICOM slices (512 x 512, 0.98 mm pixels, 2 mm apart);
    ``dicom_seg``: a multi-label mask on that series (label 1 = spleen); ``ct``: a
    whole-abdomen volume (122 x 101 x 112, 3 mm, RAS); ``ct_spleen``: its spleen mask.
    Both masks are the TotalSegmentator model's output, not manual annotations.
    """

    root: Path
    dicom_dir: Path
    dicom_seg: Path
    ct: Path
    ct_spleen: Path
    licence: Path

    #: label of the spleen in :attr:`dicom_seg`
    SPLEEN_LABEL = 1


def _sample_ct_candidates() -> list[Path]:
    """The checkout's ``data/samples/...`` first, then the installed data-files locations."""
    import site

    # pip installs a wheel's data files under the scheme's "data" path: the environment's
    # prefix, or the user base for ``pip install --user``.
    prefixes = [sysconfig.get_path("data"), sys.prefix, site.getuserbase()]
    found = [PACKAGE_DIR.parent / "data" / SAMPLE_CT_SUBDIR]
    for prefix in prefixes:
        if prefix:
            path = Path(prefix) / "share" / "spleen-course" / SAMPLE_CT_SUBDIR
            if path not in found:
                found.append(path)
    return found


def sample_ct() -> SampleCT:
    """The paths of the real sample CT that comes with the course (no download).

    In a checkout the files are ``data/samples/totalsegmentator/``; a package installed
    from a wheel carries them as data files in ``<prefix>/share/spleen-course/``. Raises a
    one-line :class:`DataError` when neither is there.

    >>> s = sample_ct()
    >>> s.ct.name, s.dicom_dir.name, len(list(s.dicom_dir.iterdir()))
    ('ct.nii.gz', 'ct_dicom', 20)
    """
    names = {"dicom_dir": "ct_dicom", "dicom_seg": "ct_dicom_seg.nii.gz", "ct": "ct.nii.gz",
             "ct_spleen": "ct_spleen.nii.gz", "licence": "LICENSE.TotalSegmentator"}
    candidates = _sample_ct_candidates()
    for root in candidates:
        if all((root / name).exists() for name in names.values()):
            return SampleCT(root=root, **{key: root / name for key, name in names.items()})
    raise DataError(candidates[0], "the course's sample CT is not there (nor under "
                                   f"{', '.join(str(c) for c in candidates[1:])}); reinstall the "
                                   "course package or restore data/samples/ from the repository")


def _read_dataset_json(path: Path) -> dict[str, Any]:
    """Parse and check ``dataset.json``; raise DataError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(path, f"cannot be read ({exc.strerror or exc})") from exc
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg})") from exc
    if not isinstance(meta, dict):
        raise DataError(path, f"must hold a JSON object, found {type(meta).__name__}")
    if "training" not in meta:
        raise DataError(path, f"has no \"training\" key (keys found: {sorted(meta)})")
    training = meta["training"]
    if not isinstance(training, list):
        raise DataError(path, f"\"training\" must be a list of cases, found {type(training).__name__}")
    if not training:
        raise DataError(path, "\"training\" lists no cases")
    for index, entry in enumerate(training):
        if not isinstance(entry, dict):
            raise DataError(path, f"\"training\" entry {index} must be an object with \"image\" and "
                                  f"\"label\", found {json.dumps(entry)[:60]}")
        for key in ("image", "label"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise DataError(path, f"\"training\" entry {index} has no \"{key}\" file path "
                                      f"({json.dumps(entry)[:80]})")
    return meta


def find_dataset(data_dir: str | os.PathLike) -> Path:
    """Return the absolute data set folder (MSD layout) in or under ``data_dir``.

    ``data_dir`` may be the data set itself or the folder holding ``Task09_Spleen/``.
    Raises DataError for a missing or empty folder, a missing or malformed
    ``dataset.json``, missing ``imagesTr/``/``labelsTr/``, or listed files that do not exist.

    >>> find_dataset("/surely/not/here")
    Traceback (most recent call last):
    ...
    spleen_helpers.errors.DataError: /surely/not/here: data folder does not exist
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(root, "data folder does not exist")
    if not root.is_dir():
        raise DataError(root, "is not a folder (give the data set folder holding dataset.json)")
    root = root.resolve()
    if not (root / "dataset.json").exists() and (root / MSD_SPLEEN_TASK).is_dir():
        root = root / MSD_SPLEEN_TASK
    if next(root.iterdir(), None) is None:
        raise DataError(root, f"data folder is empty ({_LAYOUT})")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise DataError(root, f"no dataset.json found ({_LAYOUT})")
    meta = _read_dataset_json(meta_path)
    for sub in ("imagesTr", "labelsTr"):
        if not (root / sub).is_dir():
            raise DataError(root / sub, f"folder is missing ({_LAYOUT})")
    listed = [root / entry[key] for entry in meta["training"] for key in ("image", "label")]
    missing = [p for p in listed if not p.is_file()]
    if missing:
        raise DataError(os.path.normpath(missing[0]),
                        f"does not exist, but dataset.json lists it ({len(missing)} of "
                        f"{len(listed)} listed files are missing)")
    return root


def load_datalist(data_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Training cases as MONAI dicts ``{"image": abs_path, "label": abs_path}``, sorted by image name.

    The folder is checked with :func:`find_dataset` first, then parsed with MONAI's
    ``load_decathlon_datalist``. The order is ``sorted()`` by image file name (lexicographic:
    ``spleen_10`` before ``spleen_2``), the order of MONAI's spleen tutorial.
    """
    from monai.data import load_decathlon_datalist

    root = find_dataset(data_dir)
    items = load_decathlon_datalist(root / "dataset.json", is_segmentation=True,
                                    data_list_key="training", base_dir=root)
    files = [{"image": str(item["image"]), "label": str(item["label"])} for item in items]
    return _sorted_cases(files)


def load_test_cases(data_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The held-out test cases that have labels, as ``{"image", "label"}`` dicts sorted by name.

    The phantom lists its test cases with labels under ``"test"`` in ``dataset.json``; the
    real Task09 data lists test images without labels (the challenge kept them), so there
    this returns ``[]``: such cases cannot be scored.

    >>> from spleen_helpers.synthetic import write_synthetic_dataset
    >>> import tempfile
    >>> [Path(c["image"]).name for c in load_test_cases(write_synthetic_dataset(tempfile.mkdtemp(), 1, num_test=2))]
    ['spleen_test_1.nii.gz', 'spleen_test_2.nii.gz']
    """
    root = find_dataset(data_dir)
    meta = _read_dataset_json(root / "dataset.json")
    cases = []
    for entry in meta.get("test") or []:
        if isinstance(entry, dict) and isinstance(entry.get("label"), str):
            case = {k: os.path.normpath(root / entry[k]) for k in ("image", "label")}
            missing = [case[k] for k in ("image", "label") if not Path(case[k]).is_file()]
            if missing:
                raise DataError(missing[0], "does not exist, but dataset.json lists it as a test case")
            cases.append(case)
    return _sorted_cases(cases)


def _sorted_cases(datalist: list[dict[str, str]]) -> list[dict[str, str]]:
    """The tutorial's order: by image file name, then full path as a tie-breaker."""
    return sorted(datalist, key=lambda d: (Path(d["image"]).name, str(d["image"])))


def split_datalist(datalist: list[dict[str, str]],
                   cfg: CourseConfig) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Split cases into ``(train, val)``: the last ``cfg.val_count`` cases, or ``cfg.val_fraction``.

    Cases are first put in the tutorial's order (sorted by image file name), so the split
    does not depend on the order of ``datalist``. With ``val_fraction`` set, the number of
    validation cases is ``round(n * val_fraction)``. Raises ConfigError when either part
    would be empty.

    >>> cases = [{"image": f"spleen_{i}.nii.gz", "label": f"l_{i}.nii.gz"} for i in range(1, 5)]
    >>> [Path(c["image"]).stem for c in split_datalist(cases, CourseConfig(val_count=1))[1]]
    ['spleen_4.nii']
    """
    cases = _sorted_cases(list(datalist))
    n = len(cases)
    if cfg.val_fraction is not None:
        n_val = int(round(n * cfg.val_fraction))
        how = f"val_fraction={cfg.val_fraction} of {n} cases gives {n_val} validation case(s)"
    else:
        n_val = cfg.val_count
        how = f"val_count={cfg.val_count} with {n} cases"
    if n_val < 1:
        raise ConfigError(None, f"the split leaves no validation case ({how})")
    if n_val >= n:
        raise ConfigError(None, f"the split leaves no training case ({how}); "
                                "lower val_count/val_fraction or add cases")
    return cases[: n - n_val], cases[n - n_val:]


# ---------------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class CaseInfo:
    """What :func:`validate_case` found about one image/label pair.

    ``label_voxels``, ``spleen_ml`` and ``side`` (where the spleen lies, and whether the header
    looks turned: :func:`~spleen_helpers.anatomy.spleen_side`) are None when the voxel data
    was not read.
    """

    image: Path
    label: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: tuple[str, str, str]
    label_voxels: int | None
    spleen_ml: float | None
    side: SpleenSide | None = None

    @property
    def name(self) -> str:
        """Case name, e.g. ``spleen_19``."""
        return case_name(self.image)


# nibabel, gzip and zlib report damaged files with these.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError,
                MemoryError)


def _gunzip(path: Path) -> bytes:
    """The whole of a ``.gz`` file, its CRC and length checked.

    One ``zlib`` call for a single-member file (what nibabel and every scanner tool write):
    ``gzip.open(...).read()`` checks the same trailer but inflates in 8 KiB steps, 0.21 s
    instead of 0.14 s for a 512 × 512 × 100 CT (BENCHMARKS.md, section 3). Anything after
    the first member goes to :func:`gzip.decompress`, which reads every member.
    """
    raw = path.read_bytes()
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    data = inflate.decompress(raw)
    if not inflate.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    if inflate.unused_data:
        return gzip.decompress(raw)
    return data


def case_name(image: str | os.PathLike) -> str:
    """The case name of an image file: its name up to the first dot.

    >>> case_name("data/imagesTr/spleen_19.nii.gz")
    'spleen_19'
    """
    return Path(image).name.split(".")[0]


def volume_ml(voxels: int, spacing: Any) -> float:
    """Volume in mL (1 mL = 1000 mm³) of ``voxels`` voxels of size ``spacing`` mm.

    >>> volume_ml(1000, (1.0, 1.0, 2.0))
    2.0
    """
    return int(voxels) * float(np.prod([float(s) for s in spacing])) / 1000.0


def voxel_spacing(affine: Any) -> tuple[float, float, float]:
    """Voxel size in mm along the array's three axes, read from a NIfTI affine.

    >>> voxel_spacing(np.diag([-0.8, 0.8, 2.5, 1.0]))
    (0.8, 0.8, 2.5)
    """
    sx, sy, sz = (float(v) for v in nib.affines.voxel_sizes(np.asarray(affine))[:3])
    return (sx, sy, sz)


def header_disagreement(img: Any) -> str | None:
    """What a NIfTI header's two orientations say when they disagree, else None.

    A NIfTI header holds the voxel-to-world transform twice: the ``qform`` (a rotation,
    voxel sizes and an offset) and the ``sform`` (any affine). nibabel uses the sform when
    its code is set, and other readers (ITK versions among them) have preferred the qform; a
    file whose two fields point different ways is read differently by different tools.

    >>> img = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    >>> img.set_qform(np.diag([-1.0, -1.0, 1.0, 1.0]), code=1)
    >>> header_disagreement(img)
    'its qform says LPS and its sform says RAS: the course uses the sform (as nibabel does)'
    """
    header = getattr(img, "header", None)
    if header is None or not hasattr(header, "get_qform"):
        return None
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    if not qcode or not scode:
        return None
    q, s = "".join(nib.aff2axcodes(qform)), "".join(nib.aff2axcodes(sform))
    if q == s:
        return None
    return f"its qform says {q} and its sform says {s}: the course uses the sform (as nibabel does)"


def open_nifti(path: str | os.PathLike, what: str = "image",
               read_data: bool = False) -> tuple[Any, np.ndarray | None]:
    """Open a 3-D NIfTI volume; return ``(image, voxels)`` (``voxels`` only with ``read_data``).

    The one place where the course opens a NIfTI file: a missing file, a folder, a file
    nibabel cannot read, a damaged ``.nii.gz`` or a volume that is not 3-D is a one-line
    :class:`~spleen_helpers.errors.DataError` naming the file. ``what`` names the file's
    role in the message (``label file does not exist``).

    >>> open_nifti("/surely/not/here.nii.gz", "label")
    Traceback (most recent call last):
    ...
    spleen_helpers.errors.DataError: /surely/not/here.nii.gz: label file does not exist
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder; expected a NIfTI file (.nii or .nii.gz)")
    if not path.is_file():
        raise DataError(path, f"{what} file does not exist")
    try:
        img = nib.load(path)
        data = None
        if read_data:
            if path.name.endswith(".gz") and hasattr(type(img), "from_bytes"):
                # nibabel stops reading at the end of the voxel data, so a damaged gzip trailer
                # or a corrupt block after it goes unnoticed; reading the stream to its end
                # checks gzip's CRC and length, then nibabel parses the same bytes.
                img = type(img).from_bytes(_gunzip(path))
            data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        reason = str(exc).replace(str(path), "").strip(' "') or type(exc).__name__
        if "Cannot work out file type" in reason:
            reason = "nibabel cannot tell its file type: not an image, or truncated"
        if isinstance(exc, ImageFileError):
            raise DataError(path, f"is not a readable NIfTI image ({reason})") from exc
        raise DataError(path, f"is corrupt or truncated ({type(exc).__name__}: {reason})") from exc
    if len(img.shape) != 3:
        raise DataError(path, f"is {len(img.shape)}-D with shape {tuple(img.shape)}; expected a 3-D volume")
    disagreement = header_disagreement(img)
    if disagreement:
        warnings.warn(f"{path}: {disagreement}", UserWarning, stacklevel=2)
    return img, data


def check_same_grid(image: Any, other: Any, image_path: str | os.PathLike,
                    other_path: str | os.PathLike, what: str = "label") -> None:
    """DataError naming ``other_path`` unless both volumes have the same shape and affine.

    Affines may differ by :data:`AFFINE_TOLERANCE_MM` (rounding in the header); a larger
    difference means the two files are not on the same voxel grid.
    """
    if tuple(image.shape) != tuple(other.shape):
        raise DataError(other_path, f"{what} shape {tuple(other.shape)} does not match image "
                                    f"{Path(image_path).name} shape {tuple(image.shape)}")
    diff = float(np.abs(np.asarray(image.affine) - np.asarray(other.affine)).max())
    if not diff <= AFFINE_TOLERANCE_MM:  # also catches NaN
        raise DataError(other_path, f"affine differs from the affine of image {Path(image_path).name} "
                                    f"by up to {diff:.4g} mm (tolerance {AFFINE_TOLERANCE_MM} mm): "
                                    f"the {what} is not on the image's voxel grid")


def _label_voxels(path: Path, data: np.ndarray) -> int:
    """Count voxels of 1; DataError naming the values found if any is not 0 or 1."""
    ok = (data == 0) | (data == 1)
    if not bool(ok.all()):
        bad = np.unique(data[~ok])
        shown = ", ".join(f"{v:g}" for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise DataError(path, f"label has values other than 0 and 1: found {shown} "
                              f"({int((~ok).sum())} voxels); expected a binary spleen mask")
    return int(np.count_nonzero(data))


def validate_case(image_path: str | os.PathLike, label_path: str | os.PathLike,
                  read_data: bool = True) -> CaseInfo:
    """Check one image/label pair and describe it; raise DataError naming the bad file.

    Checks that both open as 3-D NIfTI volumes, have the same shape and the same affine
    (within 1e-3 mm), and, with ``read_data`` (default), that every voxel can be read
    (catches truncated or corrupt ``.nii.gz``) and the label holds only 0 and 1.
    An all-zero label is allowed but reported with :func:`warnings.warn`. With the voxels
    read, ``side`` says where the spleen lies relative to the body
    (:func:`~spleen_helpers.anatomy.spleen_side`).

    >>> from spleen_helpers.synthetic import write_synthetic_dataset
    >>> import tempfile
    >>> root = write_synthetic_dataset(tempfile.mkdtemp(), num_cases=1, seed=0)
    >>> f = load_datalist(root)[0]
    >>> info = validate_case(f["image"], f["label"])
    >>> info.shape, info.orientation, info.spleen_ml > 0
    ((96, 96, 24), ('L', 'P', 'S'), True)
    """
    image_path, label_path = Path(image_path), Path(label_path)
    img, img_data = open_nifti(image_path, "image", read_data)
    lab, lab_data = open_nifti(label_path, "label", read_data)
    check_same_grid(img, lab, image_path, label_path)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    voxels: int | None = None
    volume: float | None = None
    side: SpleenSide | None = None
    if lab_data is not None and img_data is not None:
        voxels = _label_voxels(label_path, lab_data)
        volume = volume_ml(voxels, spacing)
        side = spleen_side(img_data, lab_data, img.affine)
        if voxels == 0:
            warnings.warn(f"{label_path}: label is empty (no spleen voxels)", UserWarning, stacklevel=2)
    return CaseInfo(image=image_path, label=label_path,
                    shape=tuple(int(s) for s in img.shape),  # type: ignore[arg-type]
                    spacing=spacing,  # type: ignore[arg-type]
                    orientation=tuple(nib.aff2axcodes(img.affine)),  # type: ignore[arg-type]
                    label_voxels=voxels, spleen_ml=volume, side=side)


def side_survey(infos: list[CaseInfo]) -> SideSurvey:
    """The spleen sides of the cases whose voxels were read, by case name.

    >>> side_survey([]).sides
    {}
    """
    return SideSurvey({info.name: info.side for info in infos if info.side is not None})


def validate_dataset(data_dir: str | os.PathLike, check_all: bool = True, *, keep_headers: bool = False,
                     log: Any = print) -> list[CaseInfo]:
    """Check every case of a data set; return one :class:`CaseInfo` per case in datalist order.

    ``check_all=True`` reads every voxel of every case (slow on the real data: about
    1.5 GB to decompress). ``check_all=False`` reads all the voxels of the first case only
    and checks the headers (3-D, shapes, affines) of the others. ``log`` gets one line: on
    which side of the body the spleen lies in the cases read, and what the course does about
    cases that look turned (read them with the header turned back, unless ``keep_headers``).
    """
    infos = [validate_case(f["image"], f["label"], read_data=check_all or i == 0)
             for i, f in enumerate(load_datalist(data_dir))]
    log(side_survey(infos).line(corrected=not keep_headers))
    return infos


# --------------------------------------------------------------------------------- download
def download_msd_spleen(root: str | os.PathLike, url: str = MSD_SPLEEN_URL, md5: str = MSD_SPLEEN_MD5,
                        progress: bool = True) -> Path:
    """Download and extract MSD Task09 Spleen into ``root/Task09_Spleen``; return that folder.

    Does nothing when ``root/Task09_Spleen`` already passes :func:`find_dataset`. The
    archive (about 1.5 GB) is downloaded with MONAI's ``download_url`` (progress bar) into
    a temporary folder beside the target, its md5 is checked, it is extracted there with
    MONAI's ``extractall``, checked, and only then renamed into place, so an interrupted or
    corrupt download never leaves a ``Task09_Spleen`` folder behind. A wrong md5 deletes
    the archive and raises DataError with both checksums; no network raises DataError
    naming the URL.

    Example (downloads the real data set)::

        data_dir = download_msd_spleen("~/data")   # -> ~/data/Task09_Spleen
    """
    from monai.apps.utils import download_url, extractall

    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5 or ""):
        raise ConfigError(None, f"md5 must be 32 hexadecimal digits, got {md5!r}")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(root, "download root is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(root, f"cannot create the download folder ({exc.strerror or exc})") from exc
    root = root.resolve()
    target = root / MSD_SPLEEN_TASK
    if target.exists():
        if target.is_dir() and next(target.iterdir(), None) is None:
            target.rmdir()  # an empty folder holds nothing to lose
        else:
            try:
                found = find_dataset(target)
            except DataError as exc:
                raise DataError(target, f"exists but is not a complete data set ({exc}); delete it "
                                        "or choose another root, then download again") from exc
            print(f"{MSD_SPLEEN_TASK} is already in {found}; nothing to download")
            return found

    archive_name = Path(urlparse(url).path).name or f"{MSD_SPLEEN_TASK}.tar"
    staging = staging_dir(root, MSD_SPLEEN_TASK)
    # MONAI logs its own multi-line account of each step and failure; this function reports
    # in one line (print or DataError), so MONAI's logger is quietened meanwhile.
    with quiet_logger("monai.apps"):
        try:
            archive = staging / archive_name
            print(f"downloading {url} to {root}")
            try:
                with warnings.catch_warnings():
                    # the md5 is checked right below, to report both checksums on a mismatch
                    warnings.filterwarnings("ignore", message="No hash value provided")
                    download_url(url=url, filepath=archive, hash_val=None, progress=progress)
            except urllib.error.HTTPError as exc:
                raise DataError(target, f"download from {url} failed: the server answered HTTP "
                                        f"{exc.code} {exc.reason}") from exc
            except urllib.error.ContentTooShortError as exc:
                raise DataError(target, f"download from {url} was cut short (network unreachable or "
                                        "interrupted); run the download again") from exc
            except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError) as exc:
                # RuntimeError: MONAI's "failed due to network issue or denied permission"
                reason = getattr(exc, "reason", None) or exc
                raise DataError(target, f"download from {url} failed: network unreachable "
                                        f"({reason})") from exc
            except OSError as exc:  # the local side: disk full, no permission, ...
                raise DataError(target, f"download from {url} failed while saving it "
                                        f"({exc.strerror or exc})") from exc
            if not archive.is_file():  # MONAI's download_url swallows some permission errors
                raise DataError(target, f"download from {url} failed: no file was written to {staging}")
            actual = file_md5(archive)
            if actual != md5.lower():
                archive.unlink()
                raise DataError(archive_name, f"md5 {actual} does not match the expected {md5} (the "
                                              f"archive from {url} is corrupt or incomplete and was "
                                              "deleted; nothing was extracted)")
            extracted = staging / "extracted"
            try:
                extractall(filepath=archive, output_dir=extracted, has_base=True)
            except (OSError, EOFError, ValueError, NotImplementedError) as exc:
                raise DataError(archive_name, f"(from {url}) cannot be extracted ({exc})") from exc
            archive.unlink()
            unpacked = extracted / MSD_SPLEEN_TASK
            if not unpacked.is_dir():
                raise DataError(archive_name, f"(from {url}) does not contain a {MSD_SPLEEN_TASK}/ folder")
            try:
                find_dataset(unpacked)
            except DataError as exc:
                raise DataError(archive_name, f"(from {url}) does not hold a usable data set: "
                                              f"{exc.problem}") from exc
            try:
                os.replace(unpacked, target)  # atomic: the data set appears complete or not at all
            except OSError as exc:
                raise DataError(target, f"cannot move the extracted data set into place "
                                        f"({exc.strerror or exc})") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"{MSD_SPLEEN_TASK} is ready in {target}")
    return target
