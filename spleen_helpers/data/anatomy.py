"""Anatomy as the judge of a header: which side of the body is the spleen on?

A NIfTI header says where every voxel lies in the patient (RAS+ world coordinates: +x to
the patient's right, +y to the front, +z up). Headers can lie: DICOM's LPS numbers written
into a NIfTI as if they were RAS turn the body 180° about its long axis, and a flipped axis
mirrors it. Every geometry check passes on such a file; only anatomy can tell. The spleen
lies on the patient's left and towards the back, 60–110 mm left of the body's centre, so
its side is a cheap and robust judge:

* :func:`spleen_side` compares the spleen's centroid with the body's (the largest
  connected region above :data:`BODY_HU`, so the scanner table does not pull it backwards),
  both in world coordinates from the affine. Left/right decides; front/back confirms, with a
  dead band of :data:`DEAD_BAND_MM`:

  ==================  ====================  =====================
  left/right          front/back            verdict
  ==================  ====================  =====================
  left                back or dead band     as expected
  right               front                 turned (LPS read as RAS)
  right               back                  mirrored
  left                front                 mirrored
  right               dead band             turned or mirrored
  near the midline,
  or a tiny mask      any                   no verdict (None)
  ==================  ====================  =====================

  A mirror (one flipped axis, or rarely *situs inversus*) is reported, never corrected.
* :func:`write_lps_as_ras_twin` writes the *LPS-as-RAS twin* of a NIfTI file: the same
  voxels with world x and y negated (``LPS_AS_RAS @ affine``), the conversion mistake that
  the Decathlon's spleen data is reported to carry. Reading a twin with the same matrix
  applied again (:class:`~spleen_helpers.engine.transforms.TurnHeaderd`) gives the true header
  back exactly.

Example:
    >>> from spleen_helpers.data.phantom import generate_case
    >>> image, label, affine = generate_case(seed=0)
    >>> spleen_side(image, label, affine).verdict
    'as expected'
    >>> spleen_side(image, label, LPS_AS_RAS @ affine).verdict
    'turned'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..ground.files import save_nifti_atomic

__all__ = [
    "LPS_AS_RAS", "BODY_HU", "DEAD_BAND_MM", "MIDLINE_MM", "MIN_SPLEEN_ML", "VERDICTS",
    "SpleenSide", "spleen_side", "SideSurvey", "survey_sides", "write_lps_as_ras_twin"
]


#: World x and y negated: DICOM's LPS coordinates written as if they were NIfTI's RAS (and back).
LPS_AS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


#: Voxels above this (HU) are body; air, lungs' outside and most of the table's foam are not.
BODY_HU = -500.0


#: Front/back offsets within this many mm of the body's centre neither confirm nor contradict.
DEAD_BAND_MM = 10.0


#: Left/right offsets within this many mm of the body's centre give no verdict.
MIDLINE_MM = 20.0


#: Masks smaller than this (mL) are too small to judge.
MIN_SPLEEN_ML = 5.0


#: Every verdict :func:`spleen_side` can give (None: no verdict).
VERDICTS = ("as expected", "turned", "mirrored", "turned or mirrored")


_ADVICE = {
    "turned": "the header looks turned 180° about the body's long axis (LPS written as RAS)",
    "mirrored": "the body looks mirrored (one flipped axis, or rarely situs inversus)",
    "turned or mirrored": "the header looks turned or mirrored",
}


@dataclass(frozen=True)
class SpleenSide:
    """Where a spleen mask lies relative to the body, in patient terms, and the verdict.

    ``left_mm``: how far the spleen's centroid lies to the patient's left of the body's
    (negative: to the right); ``back_mm``: how far behind it (negative: in front). Both are
    None when the mask is too small to judge.
    """

    left_mm: float | None
    back_mm: float | None
    spleen_ml: float
    verdict: str | None

    @property
    def wrong_side(self) -> bool:
        """True when the verdict is anything but "as expected" (a turned or mirrored body)."""
        return self.verdict is not None and self.verdict != "as expected"

    def line(self) -> str:
        """One sentence: where the spleen lies and what that says about the header.

        >>> SpleenSide(98.0, 21.0, 250.0, "as expected").line()
        "spleen 98 mm to the patient's left of the body's centre and 21 mm behind it: as expected"
        """
        if self.left_mm is None or self.back_mm is None:
            return f"spleen mask of {self.spleen_ml:.1f} mL: too small to judge its side (no verdict)"
        lr = f"{abs(self.left_mm):.0f} mm to the patient's {'left' if self.left_mm >= 0 else 'right'}"
        ap = f"{abs(self.back_mm):.0f} mm {'behind' if self.back_mm >= 0 else 'in front of'} it"
        verdict = self.verdict or "near the midline, no verdict"
        if self.verdict in _ADVICE:
            verdict = f"{self.verdict}; {_ADVICE[self.verdict]}"
        return f"spleen {lr} of the body's centre and {ap}: {verdict}"


def _verdict(left_mm: float, back_mm: float) -> str | None:
    """The table of the module docstring."""
    if abs(left_mm) < MIDLINE_MM:
        return None
    back = "back" if back_mm > DEAD_BAND_MM else "front" if back_mm < -DEAD_BAND_MM else "band"
    if left_mm > 0:
        return "mirrored" if back == "front" else "as expected"
    return {"front": "turned", "back": "mirrored", "band": "turned or mirrored"}[back]


def _body_centroid(ct: np.ndarray) -> np.ndarray:
    """Voxel centroid of the largest connected region above :data:`BODY_HU`.

    Searched on every n-th voxel in-plane (about 128 × 128 samples): the centroid of a body
    hundreds of millimetres wide moves by less than a sample's width, and the connected
    components of a whole CT would cost seconds. MONAI's ``get_largest_connected_component_mask``
    finds the component.
    """
    from monai.transforms.utils import get_largest_connected_component_mask

    step = [max(1, int(n) // 128) for n in ct.shape[:2]] + [1]
    sampled = np.asarray(ct[::step[0], ::step[1], ::step[2]]) > BODY_HU
    if not sampled.any():
        return np.asarray(ct.shape, float) / 2.0 - 0.5
    body = np.asarray(get_largest_connected_component_mask(sampled[None]))[0]
    return np.argwhere(body).mean(axis=0) * np.asarray(step, float)


def _to_world(affine: np.ndarray, voxel: np.ndarray) -> np.ndarray:
    return (np.asarray(affine, float) @ np.append(voxel, 1.0))[:3]


def _read(ct: Any, mask: Any, affine: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels of both and the affine: files are opened (and checked to share a grid), arrays taken.

    Files go through :func:`~spleen_helpers.data.nifti.open_nifti`, imported here rather than at the
    top because the data checks (:func:`~spleen_helpers.data.dataset.validate_case`) call this module
    on voxels they have already read.
    """
    from .nifti import check_same_grid, open_nifti

    if isinstance(ct, (str, os.PathLike)):
        ct_path, img, ct = ct, *open_nifti(ct, "image", read_data=True)
        affine = img.affine if affine is None else affine
        if isinstance(mask, (str, os.PathLike)):
            mask_path, lab, mask = mask, *open_nifti(mask, "label", read_data=True)
            check_same_grid(img, lab, ct_path, mask_path, "mask")
    elif isinstance(mask, (str, os.PathLike)):
        lab, mask = open_nifti(mask, "label", read_data=True)
        affine = lab.affine if affine is None else affine
    if affine is None:
        raise ValueError("spleen_side needs the affine when the CT is given as an array")
    ct, mask = np.asarray(ct), np.asarray(mask)
    if ct.shape[:3] != mask.shape[:3]:
        raise ValueError(f"CT shape {ct.shape} and mask shape {mask.shape} differ")
    return ct, mask, np.asarray(affine, float)


def spleen_side(ct: Any, mask: Any, affine: Any = None) -> SpleenSide:
    """Where ``mask``'s spleen lies relative to the body of ``ct``, and the verdict (module docstring).

    ``ct`` and ``mask`` are NIfTI paths or arrays on the same grid; ``affine`` (voxel → RAS
    mm) is read from the CT's file unless given. Masks under :data:`MIN_SPLEEN_ML` get no
    verdict.

    >>> ct = np.full((60, 40, 8), -1000.0); ct[5:55, 5:35] = 40.0       # a body, 2 mm voxels
    >>> mask = np.zeros(ct.shape, np.uint8); mask[5:15, 5:15] = 1       # 6.4 mL at low x and low y
    >>> side = spleen_side(ct, mask, np.diag([2.0, 2.0, 2.0, 1.0]))     # RAS: low x is left, low y back
    >>> side.verdict, round(side.left_mm), round(side.back_mm)
    ('as expected', 40, 20)
    """
    ct, mask, affine = _read(ct, mask, affine)
    inside = mask > 0
    voxel_ml = float(np.prod(nib.affines.voxel_sizes(affine))) / 1000.0
    spleen_ml = int(np.count_nonzero(inside)) * voxel_ml
    if spleen_ml < MIN_SPLEEN_ML:
        return SpleenSide(None, None, spleen_ml, None)
    body = _to_world(affine, _body_centroid(ct))
    spleen = _to_world(affine, np.argwhere(inside).mean(axis=0))
    left_mm, back_mm = float(body[0] - spleen[0]), float(body[1] - spleen[1])   # RAS: +x right, +y front
    return SpleenSide(left_mm, back_mm, spleen_ml, _verdict(left_mm, back_mm))


@dataclass(frozen=True)
class SideSurvey:
    """:func:`spleen_side` of every labelled case of a data set, by case name."""

    sides: dict[str, SpleenSide]

    def named(self, verdict: str | None) -> tuple[str, ...]:
        """The cases with ``verdict`` (None: no verdict), in data set order."""
        return tuple(name for name, side in self.sides.items() if side.verdict == verdict)

    def line(self, corrected: bool) -> str:
        """One line: how many cases look how, and what the course does about it.

        ``corrected``: whether turned cases are read with their header corrected.

        >>> SideSurvey({"a": SpleenSide(90, 20, 200, "as expected")}).line(True)
        'spleen side of 1 labelled case: 1 as expected'
        """
        n = len(self.sides)
        counts = [f"{len(self.named(v))} {v}" for v in VERDICTS if self.named(v)]
        if self.named(None):
            counts.append(f"{len(self.named(None))} without a verdict (tiny or midline mask)")
        text = f"spleen side of {n} labelled case{'s' if n != 1 else ''}: {', '.join(counts) or 'none read'}"
        if self.named("turned"):
            text += ("; turned cases are read with x and y of their header negated (TurnHeaderd)" if corrected
                     else "; headers kept as they are (keep_headers): a model trained so learns turned anatomy")
        mirrored = len(self.named("mirrored")) + len(self.named("turned or mirrored"))
        if mirrored:
            text += f"; {mirrored} case(s) look mirrored and are used as they are: check them"
        return text


def survey_sides(cases: dict[str, tuple[Any, Any]]) -> SideSurvey:
    """:func:`spleen_side` of each ``{name: (ct, mask)}``, file paths or ``(voxels, affine)`` pairs.

    >>> from spleen_helpers.data.phantom import generate_case
    >>> image, label, affine = generate_case(seed=1)
    >>> survey_sides({"a": (image, (label, affine))}).named("as expected")
    ('a',)
    """
    sides = {}
    for name, (ct, mask) in cases.items():
        affine = None
        if isinstance(mask, tuple):
            mask, affine = mask
        sides[name] = spleen_side(ct, mask, affine)
    return SideSurvey(sides)


def write_lps_as_ras_twin(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src``'s LPS-as-RAS twin to ``dst``: the same voxels, affine ``LPS_AS_RAS @ affine``.

    What a converter gives when it writes DICOM's LPS coordinates into a NIfTI as if they were
    RAS: the body turned 180° about its long axis. Written atomically, sform and qform alike.

    >>> import tempfile, nibabel as nib
    >>> from spleen_helpers.data.dataset import sample_ct
    >>> twin = write_lps_as_ras_twin(sample_ct().ct_spleen, Path(tempfile.mkdtemp()) / "twin.nii.gz")
    >>> nib.aff2axcodes(nib.load(sample_ct().ct_spleen).affine), nib.aff2axcodes(nib.load(twin).affine)
    (('R', 'A', 'S'), ('L', 'P', 'S'))
    """
    from .nifti import open_nifti

    img, voxels = open_nifti(src, read_data=True)
    out = save_nifti_atomic(np.asarray(voxels), LPS_AS_RAS @ np.asarray(img.affine, float), dst,
                            description=f"LPS-as-RAS twin of {Path(src).name}")
    return out
