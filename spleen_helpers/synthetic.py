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
import datetime
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID,
                         SecondaryCaptureImageStorage, generate_uid)
from scipy import ndimage

from .anatomy import LPS_AS_RAS
from .config import SYNTHETIC_DATASET_NAME
from .dicom import LPS_TO_RAS
from .errors import DataError, DicomError
from .fileio import atomic_path, save_nifti_atomic, write_json_atomic

__all__ = ["PhantomSpec", "generate_case", "tilted_affine", "write_ct_series", "write_enhanced_ct",
           "write_phantom_study", "write_synthetic_dataset", "ensure_synthetic_dataset",
           "phantom_dir", "GENERATOR_VERSION", "DEFAULT_TEST_CASES"]

_HU_OFFSET = 1024   # stored value = HU + 1024, RescaleIntercept -1024
_COSINE_ATOL = 1e-3  # the affine's axes must be perpendicular to this precision

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


# ------------------------------------------------------------------------------ DICOM export
def _uid(*parts: Any) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _dataset(sop_class: str, sop_uid: str, *, patient_id: str, series_uid: str, series_number: int,
             description: str, modality: str = "CT") -> FileDataset:
    """A DICOM file's patient, study and series attributes (the same study for one patient)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = _uid("study", patient_id)
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.Manufacturer = "spleen-course"
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.StudyDate = ds.SeriesDate = datetime.datetime.now().strftime("%Y%m%d")
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    return ds


def _set_pixels(ds: FileDataset, stored: np.ndarray) -> None:
    """Grey-level uint16 pixels, array (rows, columns)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.uint16).tobytes()


def _save(ds: FileDataset, path: Path) -> Path:
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def tilted_affine(affine: np.ndarray, tilt_deg: float) -> np.ndarray:
    """The affine of a volume's voxels after :func:`write_ct_series` tilted its gantry.

    Slice ``k`` moves by ``k * slice step * tan(tilt)`` along the column direction (the
    image's second axis), as the slices of a CT acquired with a gantry tilted about the
    left-right axis do: the stack runs ``tilt_deg`` off the slice normal. The result is the
    geometry the tilted series describes (sheared); a tilt-corrected conversion must put
    every voxel where this affine says.

    >>> tilted_affine(np.diag([2.0, 2.0, 4.0, 1.0]), 45.0)[:3, 2].round(6).tolist()
    [0.0, 4.0, 4.0]
    """
    aff = np.array(affine, dtype=float)
    col, step = aff[:3, 1], aff[:3, 2]
    aff[:3, 2] = step + np.tan(np.radians(tilt_deg)) * float(np.linalg.norm(step)) * col / np.linalg.norm(col)
    return aff


def write_ct_series(volume_hu: np.ndarray, affine: np.ndarray, out_dir: str | os.PathLike, *,
                    patient_id: str = "ANON", series_description: str = "",
                    series_uid: str | None = None, series_number: int = 1,
                    gantry_tilt_deg: float = 0.0) -> list[Path]:
    """Write an (x, y, z) HU volume with a RAS ``affine`` as one DICOM CT file per z slice.

    Pixels are stored as HU + 1024 (uint16, RescaleIntercept -1024, explicit VR little
    endian, CT Image Storage). Geometry (ImagePositionPatient, ImageOrientationPatient,
    PixelSpacing, SliceThickness, SpacingBetweenSlices) is the affine converted to DICOM's
    LPS patient coordinates. ``gantry_tilt_deg`` shears the slice positions as a tilted
    gantry does (:func:`tilted_affine` gives the resulting geometry); the slices keep the
    affine's orientation. UIDs are derived from the content unless ``series_uid`` is given,
    so writing the same volume again gives the same files. Each file is written atomically;
    stale ``CT_*.dcm`` files of an earlier, longer series in ``out_dir`` are removed.
    Returns the files in slice order.

    >>> import tempfile, pydicom
    >>> vol = np.full((4, 3, 5), -1000, dtype=np.int16)
    >>> files = write_ct_series(vol, np.diag([-1.0, -1.0, 2.0, 1.0]), tempfile.mkdtemp())
    >>> len(files), pydicom.dcmread(files[1]).ImagePositionPatient
    (5, [0.0, 0.0, 2.0])
    """
    out = Path(out_dir)
    vol = np.asarray(volume_hu)
    aff = np.asarray(affine, dtype=float)
    if vol.ndim != 3:
        raise DicomError(out, f"volume must be 3-D (x, y, z), got shape {vol.shape}")
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise DicomError(out, f"affine must be a finite 4x4 matrix, got shape {aff.shape}")
    if vol.size and (vol.min() < -_HU_OFFSET or vol.max() > 65535 - _HU_OFFSET):
        raise DicomError(out, f"HU values {vol.min()}..{vol.max()} do not fit the stored range "
                              f"{-_HU_OFFSET}..{65535 - _HU_OFFSET}")
    if not np.allclose(vol, np.round(vol)):
        raise DicomError(out, "HU values must be whole numbers (CT stores integers)")
    if not abs(gantry_tilt_deg) < 60:
        raise DicomError(out, f"gantry_tilt_deg must lie within +-60 degrees, got {gantry_tilt_deg}")

    lps = LPS_TO_RAS @ aff  # the flip is its own inverse
    col_vec, row_vec, slice_vec = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    dc, dr, dz = (float(np.linalg.norm(v)) for v in (col_vec, row_vec, slice_vec))
    if min(dc, dr, dz) <= 0:
        raise DicomError(out, "affine has a zero-length axis")
    row_cos, col_cos = col_vec / dc, row_vec / dr  # DICOM: row cosine = direction along a row
    normal = np.cross(row_cos, col_cos)
    if abs(float(np.dot(row_cos, col_cos))) > _COSINE_ATOL or \
            abs(abs(float(np.dot(normal, slice_vec / dz))) - 1) > _COSINE_ATOL:
        raise DicomError(out, "affine is sheared or oblique between slices; DICOM CT needs "
                              "slices stacked along the normal of their plane")
    positions = LPS_TO_RAS @ tilted_affine(aff, gantry_tilt_deg)

    digest = hashlib.sha1(np.ascontiguousarray(vol).tobytes() + aff.tobytes()).hexdigest()
    tilt_tag = f"tilt{gantry_tilt_deg:g}" if gantry_tilt_deg else ""
    series_uid = series_uid or _uid("series", patient_id, series_description, digest, tilt_tag)
    frame_uid = _uid("frame", series_uid)
    stored = (vol.astype(np.int32) + _HU_OFFSET).astype(np.uint16)
    written: list[Path] = []
    for k in range(vol.shape[2]):
        ds = _dataset(CTImageStorage, _uid("sop", series_uid, k), patient_id=patient_id,
                      series_uid=series_uid, series_number=series_number,
                      description=series_description)
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = k + 1
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.ImagePositionPatient = [round(float(v), 6) for v in positions[:3, :3] @ [0, 0, k] + positions[:3, 3]]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [round(dr, 6), round(dc, 6)]  # (row spacing, column spacing)
        ds.SliceThickness = round(dz, 6)
        ds.SpacingBetweenSlices = round(dz, 6)
        ds.SliceLocation = round(float(np.dot(normal, ds.ImagePositionPatient)), 6)
        if gantry_tilt_deg:
            ds.GantryDetectorTilt = round(float(gantry_tilt_deg), 6)
        ds.RescaleSlope = 1
        ds.RescaleIntercept = -_HU_OFFSET
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        _set_pixels(ds, stored[:, :, k].T)  # (rows, columns)
        written.append(_save(ds, out / f"CT_{k + 1:05d}.dcm"))
    keep = {p.name for p in written}
    for stale in out.glob("CT_[0-9][0-9][0-9][0-9][0-9].dcm"):
        if stale.name not in keep:
            stale.unlink()
    return written


def write_enhanced_ct(series_files: list[Path], out_path: str | os.PathLike, *,
                      series_number: int | None = None) -> Path:
    """Write a single-frame CT series as one legacy-converted enhanced (multi-frame) CT file.

    highdicom's ``LegacyConvertedEnhancedCTImage`` does the conversion (what a PACS or a
    scanner's export does): every slice becomes a frame, positions and orientation go into
    the functional groups. UIDs are derived from the source series; the file is written
    atomically. Returns ``out_path``.

    >>> import tempfile, pydicom
    >>> tmp = Path(tempfile.mkdtemp())
    >>> files = write_ct_series(np.zeros((4, 4, 5), np.int16), np.eye(4), tmp / "single")
    >>> int(pydicom.dcmread(write_enhanced_ct(files, tmp / "multi" / "ct.dcm")).NumberOfFrames)
    5
    """
    import highdicom

    out = Path(out_path)
    if not series_files:
        raise DicomError(out, "no slices to convert")
    sources = [pydicom.dcmread(f) for f in series_files]
    for ds in sources:  # some anonymisers blank the SOP UIDs in the data set, not the file meta
        if not ds.get("SOPClassUID"):
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        if not ds.get("SOPInstanceUID"):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    source_uid = str(sources[0].SeriesInstanceUID)
    with warnings.catch_warnings():
        # the phantom's patient name is a bare ID, which highdicom would flag
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        image = highdicom.legacy.LegacyConvertedEnhancedCTImage(
            sources, series_instance_uid=_uid("enhanced", source_uid),
            series_number=int(series_number if series_number is not None
                              else sources[0].get("SeriesNumber") or 1),
            sop_instance_uid=_uid("enhanced sop", source_uid), instance_number=1)
    return _save(image, out)


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
      :func:`~spleen_helpers.dicom.choose_ct_series` picks;
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
    affine ``LPS_AS_RAS @ affine``: :func:`~spleen_helpers.anatomy.write_lps_as_ras_twin`),
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
        "reference": "generated by spleen_helpers.synthetic",
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
    from .config import default_data_dir

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
    to it: that is a :class:`~spleen_helpers.errors.DataError` (choose another folder, or
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
