"""Tests of spleen_helpers.dicom: writing, grouping, checks, chunking, conversion, CLI.

Synthetic series exercise the writer and every refusal; the real scanner series in
``../shared/data`` (skipped when absent) check slice order, geometry and pixel values
against dicom2nifti's ground truth and a real abdominal CT with a spleen mask.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from spleen_helpers.tools.cli import main
from spleen_helpers.dicom import (MIN_SLICES, DicomSeries, DicomWarning, convert_series,
                                  dicom_dir_to_nifti, find_series, load_series_hu, series_name,
                                  split_series)
from spleen_helpers.errors import DicomError
from spleen_helpers.synthetic import PhantomSpec, generate_case, write_ct_series

# x, y and z differ in size and spacing so that any swapped axis shows.
SPEC = PhantomSpec(shape=(40, 32, 10), spacing=(3.0, 2.5, 5.0))

VENDOR_SERIES = [
    "generic/anatomical/001",
    "generic/anatomical/001_implicit",
    "generic/anatomical/002_non_isotropic",
    "generic/compressed_rle/001",
    "siemens/anatomical/001",
    "siemens/anatomical/001_implicit",
    "philips/anatomical/001",
    "philips/anatomical/001_implicit",
    "ge/anatomical/001",
    "ge/anatomical/001_implicit",
]


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return generate_case(3, SPEC)


@pytest.fixture
def synth_dir(tmp_path: Path, case) -> Path:
    image, _, affine = case
    out = tmp_path / "dicom"
    write_ct_series(image, affine, out, patient_id="P1", series_description="Synthetic CT")
    return out


def _canonical(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.as_closest_canonical(img)


# ------------------------------------------------------------------------------ round trip
def test_round_trip_synthetic_through_dicom_and_nifti(synth_dir: Path, case, tmp_path: Path) -> None:
    image, _, affine = case
    (series,) = find_series(synth_dir)
    assert series.shape == SPEC.shape
    assert series.spacing == pytest.approx(SPEC.spacing)
    assert series.description == "Synthetic CT" and series.modality == "CT"
    # The reader's own geometry: the writer's voxels under the writer's affine.
    hu, tags = load_series_hu(series)
    np.testing.assert_array_equal(hu, image)
    np.testing.assert_allclose(series.affine(), affine, atol=1e-4)
    assert tags["RescaleIntercept"] == -1024.0 and tags["PatientID"] == "P1"
    # dicom2nifti's conversion: same world geometry and HU once both are in one orientation.
    (out,) = dicom_dir_to_nifti(synth_dir, tmp_path / "nifti")
    assert out.name == "001_synthetic_ct.nii.gz"
    got, want = _canonical(nib.load(out)), _canonical(nib.Nifti1Image(image, affine))
    assert got.shape == want.shape
    np.testing.assert_allclose(got.header.get_zooms(), want.header.get_zooms(), atol=1e-4)
    corners = np.array([[0, 0, 0, 1], [*[s - 1 for s in got.shape], 1]]).T
    np.testing.assert_allclose(got.affine @ corners, want.affine @ corners, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(want.dataobj))
    assert nib.load(out).get_data_dtype() == np.int16  # integral HU stored compactly


def test_round_trip_of_an_oblique_volume(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 1000, size=(12, 10, 6)).astype(np.int16)
    theta = np.radians(20)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.5, 2.0, 3.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    write_ct_series(vol, affine, tmp_path / "in")
    (series,) = find_series(tmp_path / "in")
    hu, _ = load_series_hu(series)
    got = _canonical(nib.Nifti1Image(hu, series.affine()))
    want = _canonical(nib.Nifti1Image(vol, affine))
    np.testing.assert_allclose(got.affine, want.affine, atol=1e-3)
    np.testing.assert_array_equal(got.get_fdata(), want.get_fdata())


# ----------------------------------------------------------------------- checks and refusals
def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="is empty") as err:
        find_series(tmp_path)
    _one_line_naming(err, tmp_path)


def test_folder_without_dicom_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.warns(DicomWarning, match="notes.txt"), pytest.raises(DicomError, match="no DICOM") as err:
        find_series(tmp_path)
    _one_line_naming(err, tmp_path)


def test_non_dicom_files_are_skipped_with_a_warning(synth_dir: Path, tmp_path: Path) -> None:
    (synth_dir / "README.txt").write_text("exported by a PACS")
    (synth_dir / "sub").mkdir()
    (synth_dir / "sub" / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    with pytest.warns(DicomWarning) as record:
        outs = dicom_dir_to_nifti(synth_dir, tmp_path / "out")
    messages = " ".join(str(w.message) for w in record)
    assert "README.txt" in messages and "thumb.png" in messages
    assert len(outs) == 1 and nib.load(outs[0]).shape[2] == SPEC.shape[2]


def test_two_series_in_one_folder_give_two_volumes(tmp_path: Path) -> None:
    a, _, aff = generate_case(1, SPEC)
    b, _, _ = generate_case(2, SPEC.replace(shape=(40, 32, 6)))
    write_ct_series(a, aff, tmp_path / "a", series_description="first")
    write_ct_series(b, aff, tmp_path / "b", series_description="second")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, f in enumerate(sorted((tmp_path / "a").glob("*.dcm")) + sorted((tmp_path / "b").glob("*.dcm"))):
        shutil.copy(f, mixed / f"IMG{(i * 7919) % 101:04d}")  # names unrelated to slice order
    series = find_series(mixed)
    assert sorted(s.num_slices for s in series) == [6, 10]
    outs = dicom_dir_to_nifti(mixed, tmp_path / "out")
    assert len(outs) == 2 and len({p.name for p in outs}) == 2
    assert sorted(nib.load(p).shape[2] for p in outs) == [6, 10]


def test_missing_slice_is_refused(synth_dir: Path, tmp_path: Path) -> None:
    (synth_dir / "CT_00004.dcm").unlink()
    with pytest.raises(DicomError, match="missing slice") as err:
        dicom_dir_to_nifti(synth_dir, tmp_path / "out")
    _one_line_naming(err, synth_dir)
    assert not (tmp_path / "out").exists()


def test_duplicate_slice_is_refused(synth_dir: Path) -> None:
    shutil.copy(synth_dir / "CT_00003.dcm", synth_dir / "copy_of_3.dcm")
    with pytest.raises(DicomError, match="duplicate slice position") as err:
        find_series(synth_dir)
    msg = _one_line_naming(err, synth_dir)
    assert "copy_of_3.dcm" in msg and "CT_00003.dcm" in msg


@pytest.mark.parametrize("tag, value, problem", [
    ("PixelSpacing", [2.0, 3.0], "inconsistent pixel spacing"),
    ("ImageOrientationPatient", [0, 1, 0, 0, 0, -1], "inconsistent orientation"),
])
def test_inconsistent_geometry_is_refused(synth_dir: Path, tag: str, value, problem: str) -> None:
    path = synth_dir / "CT_00005.dcm"
    ds = pydicom.dcmread(path)
    setattr(ds, tag, value)
    ds.save_as(path)
    with pytest.raises(DicomError, match=problem) as err:
        find_series(synth_dir)
    assert "CT_00005.dcm" in _one_line_naming(err, synth_dir)


def test_dicom_file_cut_off_in_its_header_is_refused(synth_dir: Path) -> None:
    path = synth_dir / "CT_00002.dcm"
    path.write_bytes(path.read_bytes()[:200])  # preamble, DICM and part of the file meta
    with pytest.raises(DicomError, match="damaged") as err:
        find_series(synth_dir)
    _one_line_naming(err, path)


def test_dicom_file_cut_off_in_its_pixels_is_refused(synth_dir: Path, tmp_path: Path) -> None:
    path = synth_dir / "CT_00002.dcm"
    path.write_bytes(path.read_bytes()[:-10])
    (series,) = find_series(synth_dir)  # the header is intact
    with pytest.raises(DicomError, match="cannot be decoded") as err:
        convert_series(series, tmp_path / "out" / "ct.nii.gz")
    _one_line_naming(err, path)
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(DicomError, match="cannot be decoded") as err:
        load_series_hu(series)
    _one_line_naming(err, path)


def test_dicom2nifti_refusal_is_a_dicom_error_and_leaves_no_file(synth_dir: Path, tmp_path: Path) -> None:
    import dicom2nifti.settings

    (series,) = find_series(synth_dir)
    gapped = dataclasses.replace(series, files=series.files[:3] + series.files[4:6],
                                 positions=series.positions[:3] + series.positions[4:6])
    dicom2nifti.settings.disable_validate_slice_increment()  # as the tutorial's seed code does
    try:
        with pytest.raises(DicomError, match="SLICE_INCREMENT_INCONSISTENT") as err:
            convert_series(gapped, tmp_path / "out" / "ct.nii.gz")
        assert dicom2nifti.settings.validate_slice_increment is False  # restored afterwards
    finally:
        dicom2nifti.settings.enable_validate_slice_increment()
    _one_line_naming(err, synth_dir)
    assert list((tmp_path / "out").iterdir()) == []  # no partial or temporary file


# ------------------------------------------------------------------------------- chunking
def _fake_series(n: int) -> DicomSeries:
    return DicomSeries("1.2.3", Path("scan"), tuple(Path(f"{i}.dcm") for i in range(n)),
                       tuple(2.0 * i for i in range(n)), (0.0, 0.0, 0.0),
                       (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, 1.0), 2.0, 8, 8,
                       description="CT", series_number=3)


def test_split_keeps_and_reports_the_short_chunk() -> None:
    with pytest.warns(DicomWarning, match=r"chunk 3 is short \(4 slices\), kept"):
        plan = split_series(_fake_series(20), 8)
    assert plan.sizes == (8, 8, 4) and plan.remainder == 4 and not plan.dropped
    assert [c.chunk for c in plan.chunks] == [1, 2, 3]
    assert plan.chunks[2].files == tuple(Path(f"{i}.dcm") for i in range(16, 20))
    np.testing.assert_allclose(plan.chunks[1].origin, (0.0, 0.0, 16.0))
    assert series_name(plan.chunks[2]) == "003_ct_chunk03"


def test_split_can_drop_the_short_chunk_and_says_so() -> None:
    with pytest.warns(DicomWarning, match="DROPPED"):
        plan = split_series(_fake_series(20), 8, drop_remainder=True)
    assert plan.sizes == (8, 8) and plan.dropped and plan.remainder == 4


def test_even_split_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert split_series(_fake_series(16), 8).sizes == (8, 8)


def test_chunks_too_small_for_conversion_are_refused_before_writing(synth_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DicomError, match=f"at least {MIN_SLICES}"):
        dicom_dir_to_nifti(synth_dir, tmp_path / "out", slices_per_group=MIN_SLICES - 1)
    # 10 slices in groups of 4 leave a 2-slice chunk: refused, nothing written.
    with pytest.warns(DicomWarning), pytest.raises(DicomError, match="only 2 slice") as err:
        dicom_dir_to_nifti(synth_dir, tmp_path / "out", slices_per_group=4)
    _one_line_naming(err, synth_dir)
    assert not (tmp_path / "out").exists()
    with pytest.warns(DicomWarning, match="DROPPED"):
        outs = dicom_dir_to_nifti(synth_dir, tmp_path / "out", slices_per_group=4, drop_remainder=True)
    assert [nib.load(p).shape[2] for p in outs] == [4, 4]


# ------------------------------------------------------------------------ real vendor DICOM
@pytest.fixture(scope="module")
def testdata(shared_data: Path) -> Path:
    return shared_data / "dicom2nifti-testdata"


def test_vendor_series_shuffled_into_one_folder_are_grouped_and_ordered(testdata: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    origin: dict[str, tuple[str, Path]] = {}
    rng = random.Random(0)
    files = [(name, f) for name in VENDOR_SERIES[:6] for f in sorted((testdata / name).glob("*.dcm"))]
    names = rng.sample(range(10_000), len(files))
    for (name, f), n in zip(files, names):
        shutil.copy(f, mixed / f"{n:05d}")
        origin[f"{n:05d}"] = (name, f)
    series = find_series(mixed)
    assert len(series) == 6
    for s in series:
        sources = {origin[f.name][0] for f in s.files}
        assert len(sources) == 1 and s.num_slices == 4
        normal = np.cross(*np.array(s.orientation).reshape(2, 3))
        pos = [float(np.dot(normal, pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient))
               for f in s.files]
        assert pos == sorted(pos) and pos == pytest.approx(list(s.positions))
        # instance numbers run monotonically with position in these series
        inst = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in s.files]
        assert inst in (sorted(inst), sorted(inst, reverse=True))
    outs = dicom_dir_to_nifti(mixed, tmp_path / "out")
    assert len(outs) == 6


@pytest.mark.parametrize("name", VENDOR_SERIES)
def test_vendor_series_convert_to_dicom2nifti_ground_truth(testdata: Path, tmp_path: Path, name: str) -> None:
    (series,) = find_series(testdata / name)
    out = convert_series(series, tmp_path / "out.nii.gz")
    got = nib.load(out)
    truth = nib.load(testdata / f"{name}_ground_truth_reoriented.nii.gz")
    assert got.shape == truth.shape
    np.testing.assert_allclose(got.affine, truth.affine, atol=1e-4)
    np.testing.assert_array_equal(got.get_fdata(), truth.get_fdata())
    # The module's own reader (pixels incl. RLE / implicit VR, and affine) agrees as well.
    hu, _ = load_series_hu(series)
    mine = _canonical(nib.Nifti1Image(hu, series.affine()))
    np.testing.assert_allclose(mine.affine, _canonical(truth).affine, atol=1e-4)
    # float32 for rescaled non-integral MR values, float64 in dicom2nifti's file
    np.testing.assert_allclose(mine.get_fdata(), _canonical(truth).get_fdata(), rtol=1e-6)


def test_series_with_a_missing_slice_is_refused(testdata: Path) -> None:
    folder = testdata / "failing" / "sliceincrement" / "001"
    with pytest.raises(DicomError, match="missing slice") as err:
        find_series(folder)
    assert "IM-0001-0010-0001.dcm" in _one_line_naming(err, folder)


def test_slices_that_are_not_a_volume_are_refused(testdata: Path) -> None:
    folder = testdata / "failing" / "notavolume" / "001"
    with pytest.raises(DicomError, match="same position") as err:
        find_series(folder)
    _one_line_naming(err, folder)


def test_monai_ct_with_a_gap_is_refused(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "monai-ct-dicom"
    with pytest.raises(DicomError, match="missing slice") as err:
        dicom_dir_to_nifti(folder, tmp_path / "out")
    _one_line_naming(err, folder)


# -------------------------------------------------------------- TotalSegmentator CT (JPEG 2000)
@pytest.fixture(scope="module")
def ts_dir(shared_data: Path) -> Path:
    return shared_data / "totalsegmentator-example"


@pytest.fixture(scope="module")
def ts_converted(ts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (series,) = find_series(ts_dir / "ct_dicom")
    return convert_series(series, tmp_path_factory.mktemp("ts") / "ct.nii.gz")


def test_totalsegmentator_ct_matches_its_spleen_mask(ts_dir: Path, ts_converted: Path) -> None:
    ct, seg = nib.load(ts_converted), nib.load(ts_dir / "ct_dicom_seg.nii.gz")
    assert ct.shape == seg.shape == (512, 512, 20)
    np.testing.assert_allclose(ct.affine, seg.affine, atol=1e-6)
    spleen = np.asanyarray(seg.dataobj) == 1
    mean_hu = float(np.asanyarray(ct.dataobj)[spleen].mean())
    assert 40 < mean_hu < 120, mean_hu  # soft tissue; a flipped or misordered volume gives ~ -377


def test_totalsegmentator_ct_in_groups_of_8(ts_dir: Path, ts_converted: Path, tmp_path: Path) -> None:
    (series,) = find_series(ts_dir / "ct_dicom")
    assert series.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))  # not 3.43, not 3.0
    with pytest.warns(DicomWarning, match=r"20 slices in groups of 8 -> 8, 8, 4; chunk 3 is short"):
        outs = dicom_dir_to_nifti(ts_dir / "ct_dicom", tmp_path, slices_per_group=8)
    assert [nib.load(p).shape for p in outs] == [(512, 512, 8), (512, 512, 8), (512, 512, 4)]
    for p in outs:
        np.testing.assert_allclose(nib.load(p).header.get_zooms(), (0.9765625, 0.9765625, 2.0))
    # The chunks, stacked, are the whole volume: same voxels, consecutive positions.
    whole = nib.load(ts_converted)
    stacked = np.concatenate([np.asanyarray(nib.load(p).dataobj) for p in outs], axis=2)
    np.testing.assert_array_equal(stacked, np.asanyarray(whole.dataobj))
    for k, p in enumerate(outs):
        np.testing.assert_allclose(nib.load(p).affine[:3, 3], (whole.affine @ [0, 0, 8 * k, 1])[:3], atol=1e-4)


def test_totalsegmentator_hu_for_display(ts_dir: Path, ts_converted: Path) -> None:
    (series,) = find_series(ts_dir / "ct_dicom")
    hu, tags = load_series_hu(series)
    assert tags["TransferSyntax"].startswith("JPEG 2000") and tags["slice step mm"] == pytest.approx(2.0)
    mine = _canonical(nib.Nifti1Image(hu, series.affine()))
    theirs = _canonical(nib.load(ts_converted))
    np.testing.assert_allclose(mine.affine, theirs.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(mine.dataobj), np.asanyarray(theirs.dataobj))


# ------------------------------------------------------------------------------------ CLI
def test_cli_converts_and_prints_each_file(synth_dir: Path, tmp_path: Path, capsys) -> None:
    rc = main(["dicom2nifti", str(synth_dir), str(tmp_path / "out"), "--slices-per-group", "5"])
    printed = capsys.readouterr().out.split()
    assert rc == 0 and len(printed) == 2
    assert all(Path(p).is_file() and p.endswith(".nii.gz") for p in printed)


def test_cli_bad_folder_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    rc = main(["dicom2nifti", str(tmp_path), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path) in err


def test_cli_reports_a_dropped_chunk_on_stderr(synth_dir: Path, tmp_path: Path, capsys) -> None:
    rc = main(["dicom2nifti", str(synth_dir), str(tmp_path / "out"), "--slices-per-group", "4",
               "--drop-remainder"])
    out, err = capsys.readouterr()
    assert rc == 0 and len(out.split()) == 2
    assert err.startswith("warning: ") and "DROPPED" in err
