"""Write a phantom volume as DICOM: a CT series, an enhanced (multi-frame) CT, a tilted gantry.

Example:
    >>> import tempfile
    >>> from spleen_helpers.data.phantom import PhantomSpec, generate_case
    >>> image, _, affine = generate_case(0, PhantomSpec(shape=(16, 16, 4)))
    >>> len(write_ct_series(image, affine, Path(tempfile.mkdtemp()) / "ct"))
    4
"""

from __future__ import annotations

import datetime
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from ..ground.errors import DicomError
from ..ground.files import atomic_path
from .dicom.series import LPS_TO_RAS

__all__ = ["tilted_affine", "write_ct_series", "write_enhanced_ct"]


_HU_OFFSET = 1024   # stored value = HU + 1024, RescaleIntercept -1024


_COSINE_ATOL = 1e-3  # the affine's axes must be perpendicular to this precision


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


def _check_series_input(out: Path, vol: np.ndarray, aff: np.ndarray, gantry_tilt_deg: float) -> None:
    """A one-line DicomError naming ``out`` unless the volume, affine and tilt can be written as CT."""
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


def _slice_geometry(out: Path, aff: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         tuple[float, float, float]]:
    """The slices' geometry in DICOM's LPS: row and column cosines, the plane's normal, and the
    spacing (along a row, along a column, between slices); DicomError for a sheared affine."""
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
    return row_cos, col_cos, normal, (dc, dr, dz)


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
    _check_series_input(out, vol, aff, gantry_tilt_deg)
    row_cos, col_cos, normal, (dc, dr, dz) = _slice_geometry(out, aff)
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
