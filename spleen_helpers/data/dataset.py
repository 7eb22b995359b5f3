"""The spleen CT data set in the Medical Segmentation Decathlon's Task09 layout.

``dataset.json`` beside ``imagesTr/`` and ``labelsTr/``; the real data and the phantom share
the layout, so every function here works on both. Every problem is a one-line
:class:`~spleen_helpers.ground.errors.DataError` naming the file, before MONAI sees it. Cases
are sorted by image file name and the last ``val_count`` validate, the tutorial's split.

Example:
    >>> from spleen_helpers.data.phantom import write_synthetic_dataset
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> import tempfile
    >>> root = write_synthetic_dataset(tempfile.mkdtemp(), num_cases=5, seed=0)
    >>> train, val = split_datalist(load_datalist(root), CourseConfig.synthetic(val_count=2))
    >>> len(train), len(val)
    (3, 2)
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..ground.errors import ConfigError, DataError
from ..ground.paths import PACKAGE_DIR
from ..ground.settings import CourseConfig
from .anatomy import SideSurvey, SpleenSide, spleen_side
from .nifti import case_name, check_same_grid, open_nifti, volume_ml

__all__ = [
    "MSD_SPLEEN_TASK", "SampleCT", "sample_ct", "find_dataset", "load_datalist", "load_test_cases",
    "split_datalist", "CaseInfo", "validate_case", "side_survey", "validate_dataset"
]


MSD_SPLEEN_TASK = "Task09_Spleen"


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
    spleen_helpers.ground.errors.DataError: /surely/not/here: data folder does not exist
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

    >>> from spleen_helpers.data.phantom import write_synthetic_dataset
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
    looks turned: :func:`~spleen_helpers.data.anatomy.spleen_side`) are None when the voxel data
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
    (:func:`~spleen_helpers.data.anatomy.spleen_side`).

    >>> from spleen_helpers.data.phantom import write_synthetic_dataset
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
