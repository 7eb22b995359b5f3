"""Read a series' pixels as Hounsfield units, single-frame and multi-frame alike.

Example:
    >>> import tempfile
    >>> from spleen_helpers.data.dicom.scan import find_series
    >>> from spleen_helpers.data.phantom import PhantomSpec, generate_case
    >>> from spleen_helpers.data.phantom_dicom import write_ct_series
    >>> from spleen_helpers.data.dicom.scan import find_series
    >>> image, _, affine = generate_case(0, PhantomSpec(shape=(16, 16, 6)))
    >>> folder = Path(tempfile.mkdtemp()) / "dicom"
    >>> files = write_ct_series(image, affine, folder)
    >>> hu, tags = load_series_hu(find_series(folder)[0])
    >>> bool((hu == image).all()), tags["Modality"]
    (True, 'CT')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset

from ...ground.errors import DicomError
from .scan import _frame_header, _sop_class_name
from .series import DicomSeries

__all__ = ["load_series_hu"]


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


def load_series_hu(series: DicomSeries) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a series' pixels as rescaled values (HU for CT) and a dict of its key tags.

    The array is in nibabel order (columns, rows, slices) with slices in position order, so
    ``series.affine()`` maps its voxels to RAS millimetres (sheared for a gantry-tilted
    series: the slices as acquired). Values are int16 when the rescale keeps them whole
    numbers in range, else float32. Compressed transfer syntaxes (JPEG 2000, RLE, ...) are
    decoded by pydicom's pixel handlers (pylibjpeg); multi-frame files frame by frame.

    >>> import tempfile
    >>> from spleen_helpers.data.phantom_dicom import write_ct_series
    >>> from spleen_helpers.data.dicom.scan import find_series
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
