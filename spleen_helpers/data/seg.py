"""A predicted mask back to DICOM: a DICOM Segmentation (SEG) object, written with highdicom.

A mask predicted from a DICOM series lies on the grid of the NIfTI that series was converted
to, and dicom2nifti reorders the axes while converting (:func:`~spleen_helpers.data.dicom.convert.convert_series`
stores the voxels along the patient axes). A DICOM viewer needs the mask on the *slices* of
the source series instead: one frame per source slice, rows and columns as the slice's
pixels. This module

* maps the mask onto the series' pixel grid with nibabel's orientation tools
  (:func:`mask_to_frames`): the two grids must differ only by axis flips and permutations,
  which is checked against both affines to a hundredth of a voxel, never assumed;
* writes it as a DICOM Segmentation with highdicom (:func:`write_dicom_seg`): binary, one
  segment "Spleen" (SNOMED CT 78961009, category Anatomical Structure 91723000), made by an
  automatic algorithm of the Artificial Intelligence family, referencing the source series'
  Study, Series and SOP Instance UIDs, with the frame geometry (plane positions, orientation,
  pixel spacing) of the source slices; atomically;
* reads a SEG back onto a NIfTI grid (:func:`dicom_seg_to_mask`) from the SEG's own
  geometry (highdicom's volume), so a round trip checks the geometry rather than repeating it.

Anonymised exports sometimes blank the UIDs. SOP Class and SOP Instance UIDs are then taken
from each file's meta header (DICOM requires the two to be equal); a blank Study or Series
Instance UID cannot be recovered, and the SEG is refused with a line saying so unless
``fill_missing_uids=True``, which references UIDs derived from the series (a viewer then
shows the SEG as its own study) and warns.

Example:
    >>> import tempfile, numpy as np
    >>> from spleen_helpers.data.phantom import PhantomSpec, generate_case
    >>> from spleen_helpers.data.phantom_dicom import write_ct_series
    >>> from spleen_helpers.data.dicom.scan import find_series
    >>> image, label, affine = generate_case(0, PhantomSpec(shape=(32, 32, 8)))
    >>> tmp = Path(tempfile.mkdtemp())
    >>> series = find_series(write_ct_series(image, affine, tmp / "ct")[0].parent)[0]
    >>> seg = write_dicom_seg(label, affine, series, tmp / "seg.dcm")
    >>> bool((dicom_seg_to_mask(seg, affine, label.shape) == label).all())
    True
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from .. import __version__
from ..ground.errors import DataError, DicomError
from ..ground.files import atomic_path
from .dicom.scan import find_series
from .dicom.series import LPS_TO_RAS, DicomSeries, DicomWarning

__all__ = [
    "SEGMENT_LABEL", "mask_to_frames", "series_for_mask", "build_dicom_seg", "write_dicom_seg",
    "check_seg_name", "save_dicom_seg", "dicom_seg_to_mask"
]


SEGMENT_LABEL = "Spleen"


# Type 2 attributes of the Patient and General Study modules: required, but may be empty. Some
# exports (and the course's phantom) leave them out; highdicom copies them into the SEG, so an
# absent one is added empty, which is what DICOM says an unknown value is.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


_VOXEL_TOLERANCE = 0.01  # grids must agree to 1/100 of a voxel (in mm: times the voxel size)


def _orientation_map(affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray,
                     target_shape: tuple[int, ...]) -> np.ndarray | None:
    """nibabel's orientation transform from one grid to the other, or None if they are not
    the same grid up to axis flips and permutations."""
    from nibabel.orientations import inv_ornt_aff, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(affine), io_orientation(target_affine))
    permuted = tuple(int(shape[int(a)]) for a in np.argsort(transform[:, 0]))
    if permuted != tuple(int(s) for s in target_shape):
        return None
    mapped = np.asarray(affine, float) @ inv_ornt_aff(transform, shape)
    voxel = float(np.min(np.linalg.norm(np.asarray(target_affine, float)[:3, :3], axis=0)))
    if not np.allclose(mapped, target_affine, atol=_VOXEL_TOLERANCE * voxel, rtol=0):
        return None
    return transform


def mask_to_frames(mask: np.ndarray, affine: np.ndarray, series: DicomSeries) -> np.ndarray:
    """The mask on ``series``' slices: ``(slices, rows, columns)`` in the series' slice order.

    ``mask``/``affine`` are a NIfTI grid (e.g. the CT the series was converted to). Raises
    DicomError when the grids are not the same up to axis flips and permutations.

    >>> s = DicomSeries("1.2", Path("."), tuple(Path(f"{i}") for i in range(4)), (0.0, 1.0, 2.0, 3.0),
    ...                 (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, 1.0), 1.0, 3, 2)
    >>> m = np.zeros(s.shape, np.uint8); m[1, 0, 3] = 1            # column 1, row 0, slice 3
    >>> np.argwhere(mask_to_frames(m, s.affine(), s)).tolist()     # (slice, row, column)
    [[3, 0, 1]]
    """
    from nibabel.orientations import apply_orientation

    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise DicomError(series.folder, f"the mask must be 3-D, got shape {mask.shape}")
    transform = _orientation_map(np.asarray(affine, float), mask.shape, series.affine(), series.shape)
    if transform is None:
        raise DicomError(series.folder, f"{series.label()}: the mask (shape {mask.shape}) is not on this "
                                        f"series' grid (shape {series.shape}): it was predicted from "
                                        "another series or resampled")
    on_series = apply_orientation(mask, transform)  # (columns, rows, slices)
    return np.ascontiguousarray(np.transpose(on_series, (2, 1, 0)))


def series_for_mask(folder: str | os.PathLike, affine: np.ndarray, shape: tuple[int, ...]) -> DicomSeries:
    """The series in ``folder`` whose grid the mask (``affine``, ``shape``) lies on.

    A study folder may hold several series; the one the mask was predicted from is found by
    its geometry. None, or two that cannot be told apart, is a DicomError.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)
        candidates = find_series(folder)
    matching = [s for s in candidates
                if _orientation_map(np.asarray(affine, float), tuple(shape), s.affine(), s.shape) is not None]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        raise DicomError(folder, f"none of its {len(candidates)} series has the mask's grid (shape "
                                 f"{tuple(shape)}); give the folder of the series the mask came from")
    raise DicomError(folder, f"{len(matching)} series share the mask's grid "
                             f"({'; '.join(s.label() for s in matching[:3])}); give the folder of one series")


def _source_headers(series: DicomSeries, fill_missing_uids: bool) -> list[pydicom.Dataset]:
    """The slices' headers (no pixels) in series order, UIDs checked (and recovered where DICOM allows)."""
    from pydicom.uid import generate_uid

    headers = []
    for path in series.files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # changed or damaged since it was scanned
            raise DicomError(path, f"cannot be read: {type(exc).__name__}: {exc}") from None
        meta = getattr(ds, "file_meta", None)
        for key, meta_key in (("SOPClassUID", "MediaStorageSOPClassUID"),
                              ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not str(ds.get(key, "") or "").strip():
                recovered = str(meta.get(meta_key, "") or "").strip() if meta is not None else ""
                if not recovered:
                    raise DicomError(path, f"has no {key} (not even in its file meta header): a SEG "
                                           "cannot reference this slice")
                setattr(ds, key, recovered)
        for key in _TYPE2:
            if key not in ds:
                setattr(ds, key, "")
        headers.append(ds)
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID")
               if any(not str(h.get(k, "") or "").strip() for h in headers)]
    if missing:
        if not fill_missing_uids:
            raise DicomError(series.folder, f"{series.label()}: the slices have no {' and no '.join(missing)} "
                                            "(removed by anonymisation?), which a DICOM SEG must reference; "
                                            "pass fill_missing_uids=True (--fill-missing-uids) to reference "
                                            "UIDs derived from the series instead")
        seed = [h.SOPInstanceUID for h in headers]
        filled = {k: generate_uid(entropy_srcs=[k, *seed]) for k in missing}
        for h in headers:
            for k, uid in filled.items():
                setattr(h, k, uid)
        warnings.warn(f"{series.folder}: the slices have no {' and no '.join(missing)}; the SEG references "
                      f"derived UIDs ({', '.join(f'{k} {v}' for k, v in filled.items())})",
                      DicomWarning, stacklevel=4)  # the caller of write_dicom_seg / predict_file
    return headers


def build_dicom_seg(mask: np.ndarray, affine: np.ndarray, series: DicomSeries, *,
                    fill_missing_uids: bool = False, series_number: int = 9901,
                    series_description: str = "Spleen segmentation (spleen-course)",
                    algorithm: str = "spleen-course 3D UNet") -> Any:
    """The mask as a highdicom ``Segmentation`` of ``series`` (not yet written).

    One binary segment "Spleen" (SCT 78961009); frames follow the source slices, empty
    ones omitted (all kept when the whole mask is empty, so the SEG stays valid and says
    "no spleen found" on every slice).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    frames = (mask_to_frames(mask, affine, series) > 0).astype(np.uint8)
    sources = _source_headers(series, fill_missing_uids)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Spleen,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm, version=__version__, family=codes.cid7162.ArtificialIntelligence),
    )
    try:
        with warnings.catch_warnings():
            # highdicom checks person names copied from the source ("ANON" has one component):
            # the course passes them on unchanged, so this is no news to the user.
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
            seg = hd.seg.Segmentation(
                source_images=sources,
                pixel_array=frames,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=[description],
                series_instance_uid=hd.UID(),
                series_number=series_number,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="spleen-course",
                manufacturer_model_name="spleen-course",
                software_versions=__version__,
                device_serial_number="none",
                content_label="SPLEEN",
                content_description="Spleen predicted by a 3D UNet (not for diagnostic use)",
                omit_empty_frames=bool(frames.any()),
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise DicomError(series.folder, f"{series.label()}: highdicom cannot build a SEG from these "
                                        f"slices ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    seg.SeriesDescription = series_description
    return seg


def write_dicom_seg(mask: np.ndarray, affine: np.ndarray, source: DicomSeries | str | os.PathLike,
                    out_path: str | os.PathLike, *, fill_missing_uids: bool = False) -> Path:
    """Write ``mask`` (on the NIfTI grid ``affine``) as a DICOM SEG of ``source``; return the path.

    ``source`` is the :class:`~spleen_helpers.data.dicom.series.DicomSeries` the mask was predicted from,
    or a DICOM folder (the series is then found by its geometry, :func:`series_for_mask`).
    ``out_path`` must end in ``.dcm``; it is written atomically.
    """
    check_seg_name(out_path)
    mask = np.asarray(mask)
    series = source if isinstance(source, DicomSeries) else series_for_mask(source, affine, mask.shape)
    return save_dicom_seg(build_dicom_seg(mask, affine, series, fill_missing_uids=fill_missing_uids),
                          out_path)


def check_seg_name(out_path: str | os.PathLike) -> Path:
    """``out_path`` as a Path, or DataError when it does not end in ``.dcm``.

    >>> check_seg_name("mask.nii.gz")
    Traceback (most recent call last):
    ...
    spleen_helpers.ground.errors.DataError: mask.nii.gz: a DICOM SEG file name must end in .dcm
    """
    out = Path(out_path)
    if out.suffix.lower() != ".dcm":
        raise DataError(out, "a DICOM SEG file name must end in .dcm")
    return out


def save_dicom_seg(seg: Any, out_path: str | os.PathLike) -> Path:
    """Write a SEG built by :func:`build_dicom_seg` to ``out_path`` (``.dcm``) atomically."""
    out = check_seg_name(out_path)
    with atomic_path(out) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return out


def dicom_seg_to_mask(seg_path: str | os.PathLike, affine: np.ndarray, shape: tuple[int, ...],
                      segment: int = 1) -> np.ndarray:
    """Read segment ``segment`` of a DICOM SEG back onto a NIfTI grid (``affine``, ``shape``).

    Uses the SEG's own frame geometry (highdicom's ``get_volume``), so it checks where
    the frames lie instead of trusting their order. Raises DicomError when the SEG does
    not cover that grid.
    """
    import highdicom as hd
    from nibabel.orientations import apply_orientation

    path = Path(seg_path)
    try:
        seg = hd.seg.segread(path)
        volume = seg.get_volume(segment_numbers=[segment], combine_segments=False)
    except Exception as exc:  # pydicom/highdicom raise many types for a file that is no SEG
        raise DicomError(path, f"is not a readable DICOM SEG ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    array = np.asarray(volume.array)[..., 0] if volume.array.ndim == 4 else np.asarray(volume.array)
    seg_affine = LPS_TO_RAS @ np.asarray(volume.affine, float)  # highdicom works in LPS
    transform = _orientation_map(seg_affine, array.shape, np.asarray(affine, float), tuple(shape))
    if transform is None:
        # Empty frames may have been omitted: place the SEG's frames into the full grid.
        return _place_frames(array, seg_affine, np.asarray(affine, float), tuple(shape), path)
    return np.asarray(apply_orientation(array, transform), dtype=np.uint8)


def _place_frames(array: np.ndarray, seg_affine: np.ndarray, affine: np.ndarray,
                  shape: tuple[int, ...], path: Path) -> np.ndarray:
    """Put a SEG volume covering part of a grid (empty end slices omitted) into the full grid."""
    from nibabel.orientations import (
        apply_orientation,
        inv_ornt_aff,
        io_orientation,
        ornt_transform,
    )

    transform = ornt_transform(io_orientation(seg_affine), io_orientation(affine))
    part = apply_orientation(array, transform)
    part_affine = seg_affine @ inv_ornt_aff(transform, array.shape)
    offset = np.linalg.solve(affine, part_affine[:, 3])[:3]
    start = np.round(offset).astype(int)
    voxel = float(np.min(np.linalg.norm(affine[:3, :3], axis=0)))
    if (not np.allclose(part_affine[:3, :3], affine[:3, :3], atol=_VOXEL_TOLERANCE * voxel, rtol=0)
            or not np.allclose(offset, start, atol=_VOXEL_TOLERANCE)
            or (start < 0).any() or (start + part.shape > np.array(shape)).any()):
        raise DicomError(path, f"its frames (volume {array.shape}) do not lie on the grid of shape {shape}")
    full = np.zeros(shape, np.uint8)
    full[tuple(slice(a, a + n) for a, n in zip(start, part.shape))] = part
    return full
