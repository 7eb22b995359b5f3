"""A synthetic abdominal CT phantom with a spleen label, in the MSD Task09 layout.

The phantom is small enough for the whole course to run on a laptop CPU, yet exercises every
step of the real pipeline: air at -1000 HU outside the body (so ``CropForegroundd`` crops),
subcutaneous and visceral fat (about -100 HU), soft tissue and liver (40-60 HU), a
contrast-enhanced spleen (100-130 HU) of irregular, case-varying shape and size at its
left-posterior position, kidneys and a contrast-filled aorta (bright distractors), a spine
(>= 400 HU), noise and partial-volume blur. Spacing is anisotropic (so ``Spacingd``
resamples) and the affine is LPS-oriented like a DICOM-derived NIfTI (so ``Orientationd``
must flip it to RAS). Everything is deterministic by seed.

Example:
    >>> image, label, affine = generate_case(seed=0)
    >>> image.shape == label.shape == PhantomSpec().shape
    True
    >>> bool(image.min() <= -1000 and 90 < image[label == 1].mean() < 140)
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.uid import CTImageStorage, SecondaryCaptureImageStorage
from scipy import ndimage

from ..ground.errors import DataError
from ..ground.files import save_nifti_atomic, write_json_atomic
from ..ground.settings import SYNTHETIC_DATASET_NAME
from .anatomy import LPS_AS_RAS
from .dicom.series import LPS_TO_RAS
from .phantom_dicom import (
    _HU_OFFSET,
    _dataset,
    _save,
    _set_pixels,
    _uid,
    write_ct_series,
)

__all__ = [
    "GENERATOR_VERSION", "PhantomSpec", "generate_case", "write_phantom_study",
    "DEFAULT_TEST_CASES", "write_synthetic_dataset", "phantom_dir", "ensure_synthetic_dataset"
]


# Bumped whenever the phantom's anatomy, intensities or layout change (3: held-out test cases),
# so that data sets written by an older version are rewritten rather than silently reused.
GENERATOR_VERSION = 3


@dataclass(frozen=True)
class PhantomSpec:
    """Grid of one synthetic volume: ``shape`` is (x, y, z) voxels, ``spacing`` (x, y, z) in mm."""

    shape: tuple[int, int, int] = (96, 96, 24)
    spacing: tuple[float, float, float] = (2.5, 2.5, 6.0)
    noise_hu: float = 12.0

    def replace(self, **changes) -> "PhantomSpec":
        return dataclasses.replace(self, **changes)

    def affine(self) -> np.ndarray:
        """LPS-oriented affine (x and y axes flipped) centred on the volume, like DICOM-derived NIfTI."""
        sx, sy, sz = self.spacing
        nx, ny, nz = self.shape
        aff = np.diag([-sx, -sy, sz, 1.0])
        aff[:3, 3] = [sx * (nx - 1) / 2, sy * (ny - 1) / 2, -sz * (nz - 1) / 2]
        return aff


def _world_grid(spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAS millimetre coordinates of every voxel centre, each of shape ``spec.shape``."""
    aff = spec.affine()
    i, j, k = (np.arange(n, dtype=np.float32) for n in spec.shape)
    x = (aff[0, 0] * i + aff[0, 3])[:, None, None]
    y = (aff[1, 1] * j + aff[1, 3])[None, :, None]
    z = (aff[2, 2] * k + aff[2, 3])[None, None, :]
    return np.broadcast_arrays(x, y, z)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 5) -> np.ndarray:
    """A smooth random field in [-1, 1] (upsampled coarse noise) for irregular shapes and texture."""
    small = rng.uniform(-1.0, 1.0, size=(coarse, coarse, coarse)).astype(np.float32)
    zoom = [s / coarse for s in shape]
    field = ndimage.zoom(small, zoom, order=3, mode="nearest")[: shape[0], : shape[1], : shape[2]]
    return np.clip(field, -1.0, 1.0)


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    """Implicit ellipsoid: < 1 inside."""
    return (((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
            + ((z - centre[2]) / radii[2]) ** 2)


def generate_case(seed: int, spec: PhantomSpec | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(image_hu int16, label uint8, affine)`` of one synthetic case, deterministic by seed."""
    spec = spec or PhantomSpec()
    rng = np.random.default_rng(seed)
    x, y, z = _world_grid(spec)
    shape = spec.shape
    hu = np.full(shape, -1000.0, dtype=np.float32)

    # Body: an elliptic cylinder with a layer of subcutaneous fat around muscle and viscera.
    half_w, half_d = rng.uniform(100, 115), rng.uniform(75, 88)
    body = (x / half_w) ** 2 + (y / half_d) ** 2
    fat_t = rng.uniform(8, 16)
    inner = (x / (half_w - fat_t)) ** 2 + (y / (half_d - fat_t)) ** 2
    hu[body < 1] = -100.0
    hu[inner < 1] = 45.0  # abdominal wall muscle
    wall = 6.0
    viscera = (x / (half_w - fat_t - wall)) ** 2 + (y / (half_d - fat_t - wall)) ** 2 < 1
    # Viscera: mottled visceral fat and bowel loops.
    bowel = _smooth_field(rng, shape, coarse=7)
    hu[viscera] = np.where(bowel[viscera] > 0.1, 30.0, -90.0)

    # Liver: large, on the patient's right (+x in RAS world coordinates).
    liver = _ellipsoid(x, y, z, (0.45 * half_w, 0.05 * half_d, rng.uniform(10, 30)),
                       (0.42 * half_w, 0.6 * half_d, rng.uniform(70, 90))) < 1
    hu[liver & viscera] = 60.0
    # Kidneys, posterior on both sides, and the contrast-filled aorta: bright distractors.
    for side in (-1, 1):
        kid = _ellipsoid(x, y, z, (side * 0.42 * half_w, -0.5 * half_d, rng.uniform(-30, -10)),
                         (15, 22, 40)) < 1
        hu[kid & viscera] = 190.0  # enhancing renal cortex
    aorta = ((x + 0.1 * half_w) ** 2 + (y + 0.3 * half_d) ** 2) < 10.0 ** 2
    hu[aorta & viscera] = 220.0
    # Spine: cortical ring over a marrow core, posterior midline, with the spinal canal.
    vert = (x ** 2 + (y + 0.62 * half_d) ** 2)
    hu[vert < 17.0 ** 2] = 700.0
    hu[vert < 13.0 ** 2] = 420.0
    hu[(x ** 2 + (y + 0.62 * half_d + 21) ** 2) < 6.0 ** 2] = 15.0

    # Spleen: on the patient's left (-x) and posterior (-y), an irregular ellipsoid with a
    # concave hilum facing the midline, size varying per case.
    scale = rng.uniform(0.8, 1.2)
    radii = np.array([rng.uniform(16, 22), rng.uniform(30, 40), rng.uniform(40, 55)]) * scale
    centre = np.array([-(0.62 * half_w - radii[0] * 0.3), -0.25 * half_d, rng.uniform(-10, 25)])
    implicit = _ellipsoid(x, y, z, centre, radii) + 0.35 * _smooth_field(rng, shape, coarse=4)
    hilum = _ellipsoid(x, y, z, centre + np.array([1.1 * radii[0], 0.3 * radii[1], 0.0]),
                       radii * np.array([0.9, 0.6, 0.7])) < 1
    spleen = (implicit < 1) & ~hilum & viscera
    spleen = ndimage.binary_opening(spleen, iterations=1)
    labels_found, n = ndimage.label(spleen)
    if n > 1:  # keep the main body only, as a real spleen is one organ
        sizes = ndimage.sum(spleen, labels_found, range(1, n + 1))
        spleen = labels_found == (1 + int(np.argmax(sizes)))
    hu[spleen] = rng.uniform(100, 130)

    # Texture, partial-volume blur (in voxels, i.e. more along z), then scanner noise.
    hu += 8.0 * _smooth_field(rng, shape, coarse=9) * (hu > -500)
    sigma = [0.6, 0.6, 0.4]
    hu = ndimage.gaussian_filter(hu, sigma=sigma)
    hu += rng.normal(0.0, spec.noise_hu, size=shape).astype(np.float32)
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    return image, spleen.astype(np.uint8), spec.affine()


def write_phantom_study(out_dir: str | os.PathLike, seed: int = 0, spec: PhantomSpec | None = None,
                        patient_id: str = "STUDY001") -> Path:
    """Write one phantom case as a study folder as a PACS exports it; return ``out_dir``.

    Four series of one study, one sub-folder each:

    * ``01_topogram/``: series 1, a localizer -- three coronal images at one position
      (``ImageType ... LOCALIZER``);
    * ``02_ct/``: series 2, the phantom CT at its own slice step (``abdomen 6 mm`` for the
      default grid);
    * ``03_ct_thin/``: series 3, a second reconstruction at half the slice step (slices in
      between interpolated), so it has the most slices: the series
      :func:`~spleen_helpers.data.dicom.choose.choose_ct_series` picks;
    * ``99_dose_report/``: series 999, a dose report as a secondary capture without image
      geometry.

    >>> import tempfile
    >>> sorted(p.name for p in write_phantom_study(Path(tempfile.mkdtemp())).iterdir())
    ['01_topogram', '02_ct', '03_ct_thin', '99_dose_report']
    """
    spec = spec or PhantomSpec(shape=(48, 48, 12), spacing=(5.0, 5.0, 6.0))
    out = Path(out_dir)
    image, _, affine = generate_case(seed, spec)
    dz = spec.spacing[2]
    write_ct_series(image, affine, out / "02_ct", patient_id=patient_id, series_number=2,
                    series_description=f"abdomen {dz:g} mm")
    # The thin reconstruction: every slice, and the mean of each neighbouring pair between them.
    thin = np.empty(image.shape[:2] + (2 * image.shape[2] - 1,), np.int16)
    thin[..., 0::2] = image
    thin[..., 1::2] = np.round((image[..., :-1].astype(np.float32) + image[..., 1:]) / 2)
    thin_affine = affine.copy()
    thin_affine[:3, 2] /= 2
    write_ct_series(thin, thin_affine, out / "03_ct_thin", patient_id=patient_id, series_number=3,
                    series_description=f"abdomen {dz / 2:g} mm")

    # Localizer: a projection through the body, three times at one position (coronal plane).
    topo_uid = _uid("topogram", patient_id, seed)
    projection = np.clip(image.astype(np.float32).mean(axis=1), -1024, 3071)  # (x, z)
    stored = (np.round(projection[:, ::-1].T) + _HU_OFFSET).astype(np.uint16)  # rows from the top
    lps = LPS_TO_RAS @ affine
    top_corner = lps[:3, :3] @ [0, (spec.shape[1] - 1) / 2, spec.shape[2] - 1] + lps[:3, 3]
    for k in range(3):
        ds = _dataset(CTImageStorage, _uid("sop", topo_uid, k), patient_id=patient_id,
                      series_uid=topo_uid, series_number=1, description="topogram")
        ds.FrameOfReferenceUID = _uid("frame", topo_uid)
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImagePositionPatient = [round(float(v), 6) for v in top_corner]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
        ds.PixelSpacing = [float(spec.spacing[2]), float(spec.spacing[0])]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -_HU_OFFSET
        _set_pixels(ds, stored)
        _save(ds, out / "01_topogram" / f"LOC_{k + 1:05d}.dcm")

    # Dose report: a secondary capture (a picture of a table) without any image geometry.
    dose_uid = _uid("dose report", patient_id, seed)
    ds = _dataset(SecondaryCaptureImageStorage, _uid("sop", dose_uid, 0), patient_id=patient_id,
                  series_uid=dose_uid, series_number=999, description="dose report")
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.ConversionType = "WSD"
    page = np.zeros((64, 96), np.uint16)
    page[8:56:8, 8:88] = 4095  # table rules
    _set_pixels(ds, page)
    _save(ds, out / "99_dose_report" / "DOSE_00001.dcm")
    return out


#: Held-out test cases written beside the training cases (``imagesTs/``, ``labelsTs/``).
DEFAULT_TEST_CASES = 4


_TEST_SEED_OFFSET = 50_000  # test cases come from seeds no training case of any set uses


def _case_seed(seed: int, k: int, test: bool = False) -> int:
    return seed * 100_003 + (_TEST_SEED_OFFSET if test else 0) + k


def _write_dicom_case(out: Path, k: int, image: np.ndarray, affine: np.ndarray, seed: int) -> None:
    write_ct_series(image, affine, out / "dicom" / f"spleen_{k}", patient_id=f"SYNTH{seed:03d}-{k:03d}",
                    series_description=f"synthetic abdomen CT case {k}")


def _parameters(num_cases: int, num_test: int, spec: PhantomSpec, seed: int) -> dict[str, Any]:
    """What makes one phantom data set differ from another (recorded in its dataset.json)."""
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "num_training": num_cases,
            "num_test": num_test, "shape_xyz": list(spec.shape), "spacing_xyz": list(spec.spacing),
            "noise_hu": spec.noise_hu}


def write_synthetic_dataset(out_dir: str | os.PathLike, num_cases: int = 12,
                            spec: PhantomSpec | None = None, seed: int = 0, dicom: bool = False,
                            overwrite: bool = False, num_test: int = DEFAULT_TEST_CASES,
                            lps_as_ras: bool = False) -> Path:
    """Write ``num_cases`` training phantoms and ``num_test`` held-out test phantoms in the Task09 layout.

    Training cases go to ``imagesTr/`` and ``labelsTr/``; test cases, with their labels, to
    ``imagesTs/`` and ``labelsTs/``, listed under ``"test"`` in ``dataset.json`` (never used
    for training or model selection: notebook 04 scores them separately). ``dataset.json``
    has the keys of the real Task09 file and is written last, so a folder without it is an
    unfinished data set. With ``dicom=True`` each training case is also written as a DICOM
    CT series under ``dicom/spleen_K/``. Returns ``out_dir``.

    ``lps_as_ras`` writes every NIfTI file as its *LPS-as-RAS twin* (the same voxels, the
    affine ``LPS_AS_RAS @ affine``: :func:`~spleen_helpers.data.anatomy.write_lps_as_ras_twin`),
    the header mistake reported for the Decathlon's spleen data; ``dataset.json`` is the same
    as without it (nothing in it tells), and DICOM series, which cannot carry that mistake,
    keep the true geometry.
    """
    spec = spec or PhantomSpec()
    out = Path(out_dir)
    if num_cases < 1:
        raise DataError(out, f"num_cases must be >= 1, got {num_cases}")
    if num_test < 0:
        raise DataError(out, f"num_test must be >= 0, got {num_test}")
    if (out / "dataset.json").exists():
        if not overwrite:
            raise DataError(out / "dataset.json", "already exists; pass overwrite=True (--force) to replace it")
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "dicom"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "dataset.json").unlink()
    lists: dict[str, list[dict[str, str]]] = {"training": [], "test": []}
    for split, count, images, labels in (("training", num_cases, "imagesTr", "labelsTr"),
                                         ("test", num_test, "imagesTs", "labelsTs")):
        for k in range(1, count + 1):
            image, label, affine = generate_case(_case_seed(seed, k, test=split == "test"), spec)
            name = f"spleen_{k}.nii.gz" if split == "training" else f"spleen_test_{k}.nii.gz"
            header = LPS_AS_RAS @ affine if lps_as_ras else affine
            save_nifti_atomic(image, header, out / images / name)
            save_nifti_atomic(label, header, out / labels / name)
            if dicom and split == "training":
                _write_dicom_case(out, k, image, affine, seed)
            lists[split].append({"image": f"./{images}/{name}", "label": f"./{labels}/{name}"})
    meta = {
        "name": SYNTHETIC_DATASET_NAME,
        "description": "Synthetic abdominal CT phantom with spleen labels (spleen-course)",
        "reference": "generated by spleen_helpers.data.phantom",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "spleen"},
        "numTraining": num_cases,
        "numTest": num_test,
        "training": lists["training"],
        "test": lists["test"],
        "synthetic": _parameters(num_cases, num_test, spec, seed) | {"dicom": dicom},
    }
    write_json_atomic(meta, out / "dataset.json")
    return out


def phantom_dir(seed: int = 0) -> Path:
    """The course's own folder for the phantom of ``seed``: ``data/synthetic`` for seed 0,
    ``data/synthetic-seedN`` for another, so phantoms of different seeds never overwrite one
    another (a model trained on one is evaluated on the same cases).

    >>> phantom_dir(3).name
    'synthetic-seed3'
    """
    from ..ground.paths import default_data_dir

    base = default_data_dir()
    return base if seed == 0 else base.with_name(f"{base.name}-seed{seed}")


def ensure_synthetic_dataset(out_dir: str | os.PathLike | None = None, num_cases: int = 12,
                             spec: PhantomSpec | None = None, seed: int = 0,
                             dicom: bool = False, num_test: int = DEFAULT_TEST_CASES,
                             log: Callable[[str], None] = print) -> Path:
    """Return the phantom data set at ``out_dir`` (default: :func:`phantom_dir` of ``seed``),
    writing it when it does not exist yet.

    A set written with the same parameters is reused as it is (with ``dicom=True``, a missing
    DICOM export is added beside it without touching the NIfTI files). A set written with
    other parameters is never silently replaced — a trained model or saved masks may belong
    to it: that is a :class:`~spleen_helpers.ground.errors.DataError` (choose another folder, or
    rewrite it with :func:`write_synthetic_dataset` ``overwrite=True`` / ``synth --force``).
    Only an incomplete set (files missing) or one made by an older generator version is
    rewritten, and ``log`` says so.
    """
    spec = spec or PhantomSpec()
    out = Path(out_dir) if out_dir else phantom_dir(seed)
    meta_path = out / "dataset.json"
    wanted = _parameters(num_cases, num_test, spec, seed)
    if not meta_path.exists():
        return write_synthetic_dataset(out, num_cases, spec, seed, dicom, num_test=num_test)
    try:
        meta = json.loads(meta_path.read_text())
        found = {k: meta["synthetic"].get(k) for k in wanted}
        complete = all((out / e[key]).exists() for part in ("training", "test")
                       for e in meta.get(part, []) for key in ("image", "label"))
    except (ValueError, AttributeError, KeyError, TypeError):
        raise DataError(meta_path, "is not a phantom data set written by this course (unreadable "
                                   "or without its parameters); choose another folder") from None
    if found.get("generator_version") != GENERATOR_VERSION or not complete:
        why = ("is incomplete (listed files are missing)" if complete is False
               else f"was written by phantom generator version {found.get('generator_version')}, "
                    f"this is version {GENERATOR_VERSION}")
        log(f"{out}: the phantom {why}; writing it again")
        return write_synthetic_dataset(out, num_cases, spec, seed, dicom, overwrite=True, num_test=num_test)
    if found != wanted:
        diffs = ", ".join(f"{k} {found[k]} (asked: {wanted[k]})" for k in wanted if found[k] != wanted[k])
        raise DataError(out, f"holds a phantom with other parameters: {diffs}; use another folder "
                             "(or rewrite this one with `spleen-course synth --force`)")
    if dicom and not meta["synthetic"].get("dicom"):
        for k, entry in enumerate(meta["training"], start=1):
            img = nib.load(out / entry["image"])
            _write_dicom_case(out, k, np.asanyarray(img.dataobj), img.affine, seed)
        meta["synthetic"]["dicom"] = True
        write_json_atomic(meta, meta_path)
    return out
