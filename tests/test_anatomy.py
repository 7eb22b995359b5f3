"""Anatomy as the judge of a header: the spleen's side on the real CT, the phantom, their
LPS-as-RAS twins, a mirror, hand-made bodies for every row of the verdict table, and the twin
writer."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spleen_helpers.data.anatomy import DEAD_BAND_MM, LPS_AS_RAS, MIDLINE_MM, SideSurvey, SpleenSide, spleen_side, survey_sides, write_lps_as_ras_twin
from spleen_helpers.data.dataset import sample_ct
from spleen_helpers.ground.errors import DataError
from spleen_helpers.data.phantom import generate_case

MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


def real_ct() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ct, spleen = nib.load(sample_ct().ct), nib.load(sample_ct().ct_spleen)
    return np.asanyarray(ct.dataobj), np.asanyarray(spleen.dataobj), ct.affine


def test_the_real_ct_and_the_phantom_are_as_expected_and_their_twins_turned() -> None:
    cases = {"real": real_ct(), **{f"phantom {s}": generate_case(s) for s in range(3)}}
    for name, (ct, mask, affine) in cases.items():
        side = spleen_side(ct, mask, affine)
        assert side.verdict == "as expected", (name, side)
        assert 50 < side.left_mm < 130 and 10 < side.back_mm < 40, (name, side)   # left and behind
        twin = spleen_side(ct, mask, LPS_AS_RAS @ affine)
        assert twin.verdict == "turned", (name, twin)
        assert twin.left_mm == pytest.approx(-side.left_mm) and twin.back_mm == pytest.approx(-side.back_mm)
        assert spleen_side(ct, mask, MIRROR_X @ affine).verdict == "mirrored", name
        assert spleen_side(ct, mask, np.diag([1.0, -1.0, 1.0, 1.0]) @ affine).verdict == "mirrored", name


def test_the_real_ct_read_from_its_files_and_from_a_twin_file(tmp_path: Path) -> None:
    assert spleen_side(sample_ct().ct, sample_ct().ct_spleen).verdict == "as expected"
    ct = write_lps_as_ras_twin(sample_ct().ct, tmp_path / "ct.nii.gz")
    mask = write_lps_as_ras_twin(sample_ct().ct_spleen, tmp_path / "mask.nii.gz")
    side = spleen_side(ct, mask)
    assert side.verdict == "turned" and "patient's right" in side.line() and "in front of" in side.line()


def test_an_empty_or_tiny_mask_gets_no_verdict() -> None:
    ct, mask, affine = generate_case(0)
    assert spleen_side(ct, np.zeros_like(mask), affine).verdict is None
    tiny = np.zeros_like(mask)
    tiny[10, 10, 10] = 1                                   # one voxel of 37.5 mm³
    side = spleen_side(ct, tiny, affine)
    assert side.verdict is None and side.left_mm is None and "too small" in side.line()
    assert not side.wrong_side


def body_with_spleen(left_mm: float, back_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 200 × 160 mm body on 2 mm RAS voxels, and a small spleen at the given offset from its centre."""
    ct = np.full((140, 120, 6), -1000.0)
    ct[20:120, 20:100] = 40.0                               # centre at voxel (69.5, 59.5)
    mask = np.zeros(ct.shape, np.uint8)
    i, j = int(round(69.5 - left_mm / 2.0)), int(round(59.5 - back_mm / 2.0))   # RAS: left is -x, back -y
    mask[i - 5:i + 5, j - 5:j + 5] = 1                      # 10 × 10 × 6 voxels = 4.8 mL at 2 mm
    mask[i - 5:i + 6, j - 5:j + 5, :] = 1                    # 5.28 mL: just above the minimum
    return ct, mask, np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.mark.parametrize(("left", "back", "verdict"), [
    (80, 20, "as expected"), (80, 0, "as expected"), (80, -30, "mirrored"),
    (-80, -20, "turned"), (-80, 30, "mirrored"), (-80, 0, "turned or mirrored"), (4, 20, None)])
def test_every_row_of_the_verdict_table(left: float, back: float, verdict: str | None) -> None:
    side = spleen_side(*body_with_spleen(left, back))
    assert side.verdict == verdict, side
    assert side.left_mm == pytest.approx(left, abs=2.0) and side.back_mm == pytest.approx(back, abs=2.0)
    assert side.wrong_side == (verdict not in (None, "as expected"))


def test_the_bands_are_what_the_module_says() -> None:
    assert DEAD_BAND_MM == 10.0 and MIDLINE_MM == 20.0
    assert spleen_side(*body_with_spleen(-80, DEAD_BAND_MM - 4)).verdict == "turned or mirrored"
    assert spleen_side(*body_with_spleen(-80, DEAD_BAND_MM + 4)).verdict == "mirrored"


def test_the_scanner_table_does_not_pull_the_body_backwards() -> None:
    """A table behind the body (above -500 HU, not touching it) is not body: the verdict and the
    front/back offset stay; counted as body, it would move the centre far back."""
    ct, mask, affine = body_with_spleen(80, 12)
    with_table = ct.copy()
    with_table[:, 2:16] = 300.0                             # a 28 mm slab, 8 mm behind the body
    plain, table = spleen_side(ct, mask, affine), spleen_side(with_table, mask, affine)
    assert table.verdict == "as expected" and table.back_mm == pytest.approx(plain.back_mm)


def test_files_on_two_grids_are_refused_in_one_line(tmp_path: Path) -> None:
    ct, mask, affine = generate_case(0)
    nib.save(nib.Nifti1Image(ct, affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine @ np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "mask.nii.gz")
    with pytest.raises(DataError, match="mask.nii.gz: affine differs"):
        spleen_side(tmp_path / "ct.nii.gz", tmp_path / "mask.nii.gz")


def test_the_twin_has_the_same_voxels_and_the_turned_header(tmp_path: Path) -> None:
    twin = write_lps_as_ras_twin(sample_ct().ct, tmp_path / "twin.nii.gz")
    original, turned = nib.load(sample_ct().ct), nib.load(twin)
    assert np.array_equal(np.asanyarray(original.dataobj), np.asanyarray(turned.dataobj))
    assert turned.get_data_dtype() == original.get_data_dtype()
    assert np.array_equal(turned.affine, LPS_AS_RAS @ original.affine)
    assert np.allclose(turned.get_qform(), turned.get_sform(), atol=1e-4)   # both fields tell the same lie
    back = write_lps_as_ras_twin(twin, tmp_path / "back.nii.gz")             # the matrix undoes itself
    assert np.array_equal(nib.load(back).affine, original.affine)


def test_a_survey_counts_and_says_what_the_course_does() -> None:
    image, label, affine = generate_case(1)
    survey = survey_sides({"a": (image, (label, affine)), "b": (image, (label, LPS_AS_RAS @ affine)),
                           "c": (image, (label, MIRROR_X @ affine))})
    assert survey.named("turned") == ("b",) and survey.named("mirrored") == ("c",)
    line = survey.line(corrected=True)
    assert line.startswith("spleen side of 3 labelled cases: 1 as expected, 1 turned, 1 mirrored")
    assert "turned cases are read with x and y of their header negated" in line and "check them" in line
    assert "headers kept as they are" in survey.line(corrected=False)
    assert SideSurvey({"x": SpleenSide(None, None, 0.0, None)}).line(True).endswith("(tiny or midline mask)")


@pytest.mark.slow
def test_the_committed_dicom_series_converted_has_its_spleen_on_the_left(tmp_path: Path) -> None:
    """The real series as the course converts it (dicom2nifti, checks on), with its reference SEG
    mask put on that grid: anatomy agrees with the header dicom2nifti wrote."""
    import nibabel.processing

    from spleen_helpers.data.dicom.choose import choose_ct_series
    from spleen_helpers.data.dicom.convert import convert_series
    from spleen_helpers.data.dicom.scan import scan_study

    series = choose_ct_series(scan_study(sample_ct().dicom_dir, notify=lambda _: None).series)
    ct = nib.load(convert_series(series, tmp_path / "ct.nii.gz"))
    reference = nibabel.processing.resample_from_to(nib.load(sample_ct().dicom_seg), ct, order=0)
    side = spleen_side(np.asanyarray(ct.dataobj), np.asanyarray(reference.dataobj) == 1, ct.affine)
    assert side.verdict == "as expected" and 80 < side.left_mm < 120 and 15 < side.back_mm < 40, side
