"""NIfTI volumes: open and check one file, compare two grids, voxel sizes and volumes.

:func:`open_nifti` is the one place where the course opens a NIfTI file: every problem is a
one-line :class:`~spleen_helpers.ground.errors.DataError` naming the file, and a header whose
qform and sform disagree gets one line saying which the course uses.

Example:
    >>> volume_ml(1000, (1.0, 1.0, 2.0)), case_name("imagesTr/spleen_19.nii.gz")
    (2.0, 'spleen_19')
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ..ground.errors import DataError

__all__ = [
    "AFFINE_TOLERANCE_MM", "NIFTI_SUFFIXES", "case_name", "volume_ml", "voxel_spacing",
    "header_disagreement", "open_nifti", "check_same_grid"
]


AFFINE_TOLERANCE_MM = 1e-3


NIFTI_SUFFIXES = (".nii", ".nii.gz")


# nibabel, gzip and zlib report damaged files with these.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError,
                MemoryError)


def _gunzip(path: Path) -> bytes:
    """The whole of a ``.gz`` file, its CRC and length checked.

    One ``zlib`` call for a single-member file (what nibabel and every scanner tool write):
    ``gzip.open(...).read()`` checks the same trailer but inflates in 8 KiB steps, which costs
    more on a whole CT (BENCHMARKS.md §3). Anything after the first member goes to
    :func:`gzip.decompress`, which reads every member.
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
    :class:`~spleen_helpers.ground.errors.DataError` naming the file. ``what`` names the file's
    role in the message (``label file does not exist``).

    >>> open_nifti("/surely/not/here.nii.gz", "label")
    Traceback (most recent call last):
    ...
    spleen_helpers.ground.errors.DataError: /surely/not/here.nii.gz: label file does not exist
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
