"""Tests of spleen_helpers.data.dicom.series: grouping, checks, study folders, choosing a series,
multi-frame files, gantry tilt, chunking, conversion, CLI.

Synthetic series and studies exercise the writers and every refusal; the committed real CT
(``data/samples``) checks geometry and HU against its spleen mask; the vendor series in
``../shared/data`` (skipped when absent) check slice order, geometry and pixel values
against dicom2nifti's ground truth.
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

from spleen_helpers.data.dataset import sample_ct
from spleen_helpers.data.dicom.series import MIN_SLICES, DicomSeries, DicomWarning
from spleen_helpers.data.dicom.choose import choose_ct_series, select_series, split_series
from spleen_helpers.data.dicom.convert import convert_series, convert_study, dicom_dir_to_nifti, series_name
from spleen_helpers.data.dicom.scan import find_series, scan_study
from spleen_helpers.data.dicom.hu import load_series_hu
from spleen_helpers.ground.errors import DicomError
from spleen_helpers.data.phantom import PhantomSpec, generate_case, write_phantom_study
from spleen_helpers.data.phantom_dicom import tilted_affine, write_ct_series, write_enhanced_ct
from spleen_helpers.tools.cli import main
from tests.support import DICOM_SPEC, one_line_naming


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




def _canonical(img: nib.Nifti1Image) -> nib.Nifti1Image:
    return nib.as_closest_canonical(img)


# ------------------------------------------------------------------------------ round trip
def test_round_trip_synthetic_through_dicom_and_nifti(synth_dir: Path, case, tmp_path: Path) -> None:
    image, _, affine = case
    (series,) = find_series(synth_dir)
    assert series.shape == DICOM_SPEC.shape
    assert series.spacing == pytest.approx(DICOM_SPEC.spacing)
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
    one_line_naming(err, tmp_path)


def test_folder_without_dicom_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.warns(DicomWarning, match="notes.txt"), pytest.raises(DicomError, match="no DICOM") as err:
        find_series(tmp_path)
    one_line_naming(err, tmp_path)


def test_non_dicom_files_are_skipped_with_a_warning(synth_dir: Path, tmp_path: Path) -> None:
    (synth_dir / "README.txt").write_text("exported by a PACS")
    (synth_dir / "sub").mkdir()
    (synth_dir / "sub" / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    with pytest.warns(DicomWarning) as record:
        outs = dicom_dir_to_nifti(synth_dir, tmp_path / "out")
    messages = " ".join(str(w.message) for w in record)
    assert "README.txt" in messages and "thumb.png" in messages
    assert len(outs) == 1 and nib.load(outs[0]).shape[2] == DICOM_SPEC.shape[2]


def test_two_series_in_one_folder_give_two_volumes(tmp_path: Path) -> None:
    a, _, aff = generate_case(1, DICOM_SPEC)
    b, _, _ = generate_case(2, DICOM_SPEC.replace(shape=(40, 32, 6)))
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
    with pytest.warns(DicomWarning, match="error in .*not converted: missing slice"), \
            pytest.raises(DicomError, match="no series could be converted .*missing slice") as err:
        dicom_dir_to_nifti(synth_dir, tmp_path / "out")
    one_line_naming(err, synth_dir)
    assert not (tmp_path / "out").exists()


def test_duplicate_slice_is_refused(synth_dir: Path) -> None:
    shutil.copy(synth_dir / "CT_00003.dcm", synth_dir / "copy_of_3.dcm")
    with pytest.raises(DicomError, match="duplicate slice position") as err:
        find_series(synth_dir)
    msg = one_line_naming(err, synth_dir)
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
    assert "CT_00005.dcm" in one_line_naming(err, synth_dir)


def test_dicom_file_cut_off_in_its_header_is_refused(synth_dir: Path) -> None:
    path = synth_dir / "CT_00002.dcm"
    path.write_bytes(path.read_bytes()[:200])  # preamble, DICM and part of the file meta
    with pytest.raises(DicomError, match="damaged") as err:
        find_series(synth_dir)
    one_line_naming(err, path)


def test_dicom_file_cut_off_in_its_pixels_is_refused(synth_dir: Path, tmp_path: Path) -> None:
    path = synth_dir / "CT_00002.dcm"
    path.write_bytes(path.read_bytes()[:-10])
    (series,) = find_series(synth_dir)  # the header is intact
    with pytest.raises(DicomError, match="cannot be decoded") as err:
        convert_series(series, tmp_path / "out" / "ct.nii.gz")
    one_line_naming(err, path)
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(DicomError, match="cannot be decoded") as err:
        load_series_hu(series)
    one_line_naming(err, path)


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
    one_line_naming(err, synth_dir)
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
    one_line_naming(err, synth_dir)
    assert not (tmp_path / "out").exists()
    with pytest.warns(DicomWarning, match="DROPPED"):
        outs = dicom_dir_to_nifti(synth_dir, tmp_path / "out", slices_per_group=4, drop_remainder=True)
    assert [nib.load(p).shape[2] for p in outs] == [4, 4]


# ------------------------------------------------------------------------ real vendor DICOM
@pytest.fixture(scope="module")
def testdata(shared_data: Path) -> Path:
    return shared_data / "dicom2nifti-testdata"


@pytest.mark.slow
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
    assert "IM-0001-0010-0001.dcm" in one_line_naming(err, folder)


def test_slices_that_are_not_a_volume_are_refused(testdata: Path) -> None:
    folder = testdata / "failing" / "notavolume" / "001"
    with pytest.raises(DicomError, match="same position") as err:
        find_series(folder)
    one_line_naming(err, folder)


def test_monai_ct_with_a_gap_is_refused(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "monai-ct-dicom"
    with pytest.warns(DicomWarning), pytest.raises(DicomError, match="missing slice") as err:
        dicom_dir_to_nifti(folder, tmp_path / "out")
    one_line_naming(err, folder)


# ------------------------------------------------ the committed real CT (TotalSegmentator, JPEG 2000)
@pytest.fixture(scope="module")
def ts_dir() -> Path:
    return sample_ct().root


@pytest.fixture(scope="module")
def ts_converted(ts_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (series,) = find_series(ts_dir / "ct_dicom")
    return convert_series(series, tmp_path_factory.mktemp("ts") / "ct.nii.gz")


@pytest.mark.slow
def test_totalsegmentator_ct_matches_its_spleen_mask(ts_dir: Path, ts_converted: Path) -> None:
    ct, seg = nib.load(ts_converted), nib.load(ts_dir / "ct_dicom_seg.nii.gz")
    assert ct.shape == seg.shape == (512, 512, 20)
    np.testing.assert_array_equal(ct.affine, seg.affine)  # exactly the mask's affine
    spleen = np.asanyarray(seg.dataobj) == 1
    mean_hu = float(np.asanyarray(ct.dataobj)[spleen].mean())
    assert abs(mean_hu - 80) < 5, mean_hu  # soft tissue; a flipped or misordered volume gives ~ -377


@pytest.mark.slow
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


# ------------------------------------------------------------------------------ study folders
@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Localizer (series 1), CT at 6 mm (2), CT at 3 mm (3), dose report without geometry (999)."""
    return write_phantom_study(tmp_path / "study", seed=1)


def _outcomes(result) -> dict:
    return {o.series_number: o for o in result.outcomes}


def test_study_folder_converts_every_volume_and_skips_the_rest(study: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with notify, nothing is issued as a warning
        result = convert_study(study, tmp_path / "out", notify=lines.append)
    names = ["002_abdomen_6_mm.nii.gz", "003_abdomen_3_mm.nii.gz"]
    assert [p.name for p in result.written] == names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names  # nothing else, no temp file
    assert [nib.load(p).shape for p in result.written] == [(48, 48, 12), (48, 48, 23)]
    image, _, affine = generate_case(1, PhantomSpec(shape=(48, 48, 12), spacing=(5.0, 5.0, 6.0)))
    got = _canonical(nib.load(result.written[0]))
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(_canonical(nib.Nifti1Image(image, affine)).dataobj))
    by_number = _outcomes(result)
    assert [o.status for o in result.outcomes] == ["skipped", "written", "written", "skipped"]
    assert by_number[1].reason == r"a localizer (ImageType ORIGINAL\PRIMARY\LOCALIZER), not a volume"
    assert by_number[999].reason.startswith("no image geometry (ImagePositionPatient, "
                                           "ImageOrientationPatient, PixelSpacing missing)")
    assert "Secondary Capture Image Storage" in by_number[999].reason
    assert len(lines) == 2 and all("\n" not in line and line.startswith(f"{study}: skipped series #")
                                   for line in lines)
    assert "'topogram'" in lines[0] and "'dose report'" in lines[1]
    table = result.table().splitlines()
    assert table[0].split() == ["series", "description", "modality", "slices", "result"]
    assert [row.split()[0] for row in table[1:]] == ["#1", "#2", "#3", "#999"]
    assert "written: 003_abdomen_3_mm.nii.gz" in table[3] and "skipped: a localizer" in table[1]
    assert table[2].split()[1:5] == ["abdomen", "6", "mm", "CT"]


def test_cli_converts_a_study_exit_0_warnings_and_a_summary_table(study: Path, tmp_path: Path, capsys) -> None:
    rc = main(["dicom2nifti", str(study), str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert rc == 0
    assert [Path(p).name for p in out.split()] == ["002_abdomen_6_mm.nii.gz", "003_abdomen_3_mm.nii.gz"]
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2 and "localizer" in warned[0] and "no image geometry" in warned[1]
    table = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(table) == 5 and table[0].startswith("series") and "skipped: no image geometry" in table[4]


def test_a_study_without_any_volume_fails_with_one_line(study: Path, tmp_path: Path, capsys) -> None:
    shutil.rmtree(study / "02_ct")
    shutil.rmtree(study / "03_ct_thin")
    out = tmp_path / "out"
    with pytest.raises(DicomError, match="no series could be converted") as err:
        dicom_dir_to_nifti(study, out, notify=lambda line: None)
    msg = one_line_naming(err, study)
    assert "'topogram'" in msg and "localizer" in msg and "'dose report'" in msg and "no image geometry" in msg
    assert not out.exists()
    assert main(["dicom2nifti", str(study), str(out)]) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.splitlines()[-1].startswith(f"error: {study}: no series could be converted")
    assert not out.exists()


def test_a_series_with_a_missing_slice_stops_only_itself(study: Path, tmp_path: Path) -> None:
    (study / "02_ct" / "CT_00005.dcm").unlink()
    lines: list[str] = []
    result = convert_study(study, tmp_path / "out", notify=lines.append)
    assert [p.name for p in result.written] == ["003_abdomen_3_mm.nii.gz"]
    second = _outcomes(result)[2]
    assert second.status == "failed" and second.reason.startswith("missing slice(s)")
    assert "CT_00004.dcm -> CT_00006.dcm" in second.reason
    assert any(line.startswith(f"{study}: error in series #2 'abdomen 6 mm'")
               and "not converted: missing slice(s)" in line for line in lines)
    assert "failed: missing slice(s)" in result.table()
    assert [o.status for o in result.outcomes] == ["skipped", "failed", "written", "skipped"]
    with pytest.raises(DicomError, match="missing slice"):  # the strict form still refuses
        find_series(study / "02_ct")


@pytest.mark.slow
def test_a_series_that_fails_half_way_leaves_no_file(study: Path, tmp_path: Path) -> None:
    damaged = study / "03_ct_thin" / "CT_00020.dcm"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # header intact, pixels cut short
    lines: list[str] = []
    result = convert_study(study, tmp_path / "out", slices_per_group=6, notify=lines.append)
    # series 3: 23 slices -> 6, 6, 6, 5; chunks 1-3 were written before chunk 4 failed
    thin = _outcomes(result)[3]
    assert thin.status == "failed" and "CT_00020.dcm" in thin.reason and "cannot be decoded" in thin.reason
    assert thin.outputs == ()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "002_abdomen_6_mm_chunk01.nii.gz", "002_abdomen_6_mm_chunk02.nii.gz"]
    assert any(line.startswith(f"{study}: series #3 'abdomen 3 mm'") and "not converted" in line
               for line in lines)


def _write_non_image(path: Path, sop_class: str, series: bool = True) -> Path:
    """A DICOM file without pixels: a dose structured report, or (``series=False``) a DICOMDIR."""
    from pydicom.dataset import FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    if series:
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
        ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "SR", 998, "radiation dose"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _write_dose_sr(folder: Path) -> Path:
    return _write_non_image(folder / "SR00001", pydicom.uid.XRayRadiationDoseSRStorage)


def test_a_structured_report_and_a_dicomdir_are_skipped_as_not_images(study: Path, tmp_path: Path) -> None:
    _write_dose_sr(study / "98_sr")
    _write_non_image(study / "DICOMDIR", pydicom.uid.MediaStorageDirectoryStorage, series=False)
    scan = scan_study(study, notify=lambda line: None)
    (sr,) = [s for s in scan.skipped if s.series_number == 998]
    assert sr.reason == "not an image (X-Ray Radiation Dose SR Storage)" and not sr.is_image
    (dicomdir,) = [s for s in scan.skipped if not s.uid]
    assert dicomdir.label() == "file DICOMDIR" and dicomdir.reason == "not an image (Media Storage Directory Storage)"
    # the strict form skips reports too (they are no image series to refuse)
    ct_only = tmp_path / "ct_and_sr"
    shutil.copytree(study / "02_ct", ct_only / "ct")
    _write_dose_sr(ct_only / "sr")
    with pytest.warns(DicomWarning, match="not an image"):
        assert [s.series_number for s in find_series(ct_only)] == [2]


def test_slices_at_one_position_are_skipped_in_a_study(study: Path) -> None:
    for f in (study / "01_topogram").iterdir():  # no longer marked as a localizer
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.save_as(f)
    scan = scan_study(study, notify=lambda line: None)
    assert scan.skipped[0].reason.startswith("all 3 slices lie at the same position")
    assert [s.series_number for s in find_series(study, on_error="skip", notify=lambda m: None)] == [2, 3]
    with pytest.raises(DicomError, match="same position"):
        find_series(study)


def test_too_few_slices_are_skipped(tmp_path: Path) -> None:
    write_ct_series(np.zeros((8, 8, 3), np.int16), np.eye(4), tmp_path / "short")
    write_ct_series(np.zeros((8, 8, 6), np.int16), np.eye(4), tmp_path / "ok", series_number=2)
    scan = scan_study(tmp_path, notify=lambda line: None)
    assert [s.num_slices for s in scan.series] == [6]
    assert scan.skipped[0].reason == f"only 3 slice(s); a volume needs at least {MIN_SLICES} (a localizer?)"


def test_lines_go_to_notify_or_are_warnings(study: Path, capsys) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scan_study(study, notify=print)
    assert len(capsys.readouterr().out.splitlines()) == 2
    with pytest.warns(DicomWarning) as record:
        scan_study(study)
    assert ["'topogram'" in str(w.message) for w in record] == [True, False]


def test_scan_table_lists_every_series(study: Path) -> None:
    table = scan_study(study, notify=lambda line: None).table().splitlines()
    assert [line.split()[0] for line in table] == ["series", "#1", "#2", "#3", "#999"]
    assert table[2].endswith("volume") and "skipped: a localizer" in table[1]


# ----------------------------------------------------------------------- choosing a series
def _series(uid: str, n: int, step: float, number: int | None, modality: str = "CT",
            orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)) -> DicomSeries:
    return DicomSeries(uid, Path("study"), tuple(Path(f"{uid}_{i}") for i in range(n)),
                       tuple(step * i for i in range(n)), (0.0, 0.0, 0.0), orientation, (0.8, 0.8),
                       step, 512, 512, series_number=number, modality=modality)


def test_choose_ct_series_rule() -> None:
    a, b, c = _series("1.1", 40, 2.0, 2), _series("1.2", 80, 1.0, 3), _series("1.3", 80, 0.5, 4)
    sagittal = _series("1.4", 200, 1.0, 5, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
    mr = _series("1.5", 300, 1.0, 6, modality="MR")
    assert choose_ct_series([a, b, c, sagittal, mr]) is c  # most slices; the tie -> thinnest step
    assert choose_ct_series([mr, b, a]) is b
    twin = _series("1.0", 80, 1.0, 7)
    assert choose_ct_series([twin, b]) is b                 # then the lower series number
    t = np.radians(20)  # a tilted axial plane is still axial
    tilted = _series("1.6", 90, 1.0, 8, orientation=(1.0, 0.0, 0.0, 0.0, np.cos(t), np.sin(t)))
    assert tilted.is_axial and choose_ct_series([a, tilted]) is tilted
    with pytest.raises(DicomError, match="no axial CT volume to segment among 2 series") as err:
        choose_ct_series([sagittal, mr])
    msg = one_line_naming(err, Path("study"))
    assert "#5" in msg and "not axial" in msg and "MR" in msg


def test_select_series_by_number_uid_or_rule(study: Path) -> None:
    scan = scan_study(study, notify=lambda line: None)
    thin = [s for s in scan.series if s.series_number == 3][0]
    assert select_series(scan) is thin                      # the rule
    assert select_series(scan, "2").series_number == 2
    assert select_series(scan, 2).series_number == 2
    assert select_series(scan, thin.uid) is thin
    with pytest.raises(DicomError, match="'topogram' uid .* was skipped: a localizer") as err:
        select_series(scan, "1")
    one_line_naming(err, study)
    with pytest.raises(DicomError, match="no series with number or SeriesInstanceUID 7; the volumes here are: #2, #3"):
        select_series(scan, "7")
    with pytest.raises(DicomError, match="2 series have number 2"):
        select_series([_series("9.1", 8, 1.0, 2), _series("9.2", 8, 1.0, 2)], "2")


# ------------------------------------------------------------------------- multi-frame CT
def test_multiframe_ct_converts_like_its_single_frame_series(synth_dir: Path, case, tmp_path: Path) -> None:
    import highdicom

    image, _, _ = case
    mf = write_enhanced_ct(sorted(synth_dir.glob("*.dcm")), tmp_path / "multi" / "ct.dcm")
    (single,) = find_series(synth_dir)
    (multi,) = find_series(tmp_path / "multi")
    assert multi.is_multiframe and multi.num_slices == DICOM_SPEC.shape[2] and set(multi.files) == {mf}
    assert multi.positions == pytest.approx(single.positions)
    np.testing.assert_allclose(multi.affine(), single.affine(), atol=1e-4)
    a = nib.load(convert_series(single, tmp_path / "single.nii.gz"))
    b = nib.load(convert_series(multi, tmp_path / "multi.nii.gz"))
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(b.dataobj), np.asanyarray(a.dataobj))
    hu, tags = load_series_hu(multi)
    np.testing.assert_array_equal(hu, image)
    assert tags["SOP class"] == "Legacy Converted Enhanced CT Image Storage" and tags["frames per file"] == 10
    # highdicom's own reading of the functional groups gives the same voxels in the same place
    vol = highdicom.imread(mf).get_volume()
    lps_of_index = vol.affine[:, [2, 1, 0, 3]]  # its array is (slice, row, column)
    theirs = nib.Nifti1Image(np.transpose(vol.array, (2, 1, 0)), LPS_TO_RAS_TEST @ lps_of_index)
    np.testing.assert_allclose(_canonical(theirs).affine, _canonical(a).affine, atol=1e-4)
    np.testing.assert_array_equal(_canonical(theirs).get_fdata(), _canonical(a).get_fdata())


LPS_TO_RAS_TEST = np.diag([-1.0, -1.0, 1.0, 1.0])


def test_multiframe_frames_are_ordered_by_position_not_by_storage(synth_dir: Path, tmp_path: Path) -> None:
    import highdicom

    sources = [pydicom.dcmread(f) for f in sorted(synth_dir.glob("*.dcm"))]
    random.Random(1).shuffle(sources)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        image = highdicom.legacy.LegacyConvertedEnhancedCTImage(
            sources, series_instance_uid=highdicom.UID(), series_number=5,
            sop_instance_uid=highdicom.UID(), instance_number=1,
            include_dimension_index=False)  # frames kept in the shuffled order
    (tmp_path / "multi").mkdir()
    image.save_as(tmp_path / "multi" / "shuffled.dcm")
    (multi,) = find_series(tmp_path / "multi")
    assert list(multi.frames) != sorted(multi.frames)  # stored out of order ...
    (single,) = find_series(synth_dir)
    a = nib.load(convert_series(single, tmp_path / "single.nii.gz"))
    b = nib.load(convert_series(multi, tmp_path / "multi.nii.gz"))  # ... converted in order
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(b.dataobj), np.asanyarray(a.dataobj))


def test_multiframe_with_a_missing_frame_is_refused(synth_dir: Path, tmp_path: Path) -> None:
    files = sorted(synth_dir.glob("*.dcm"))
    write_enhanced_ct(files[:4] + files[5:], tmp_path / "multi" / "ct.dcm")
    with pytest.raises(DicomError, match="missing slice") as err:
        find_series(tmp_path / "multi")
    assert "ct.dcm frame" in one_line_naming(err, tmp_path / "multi")


def test_multiframe_without_per_frame_positions_is_skipped(synth_dir: Path, tmp_path: Path) -> None:
    mf = write_enhanced_ct(sorted(synth_dir.glob("*.dcm")), tmp_path / "multi" / "ct.dcm")
    ds = pydicom.dcmread(mf)
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(mf)
    scan = scan_study(tmp_path / "multi", notify=lambda line: None)
    assert scan.series == () and scan.skipped[0].reason.startswith(
        "a multi-frame image (10 frames) without per-frame positions")


def test_real_multiframe_ct_jpeg2000_converts_like_its_slices(ts_dir: Path, ts_converted: Path,
                                                              tmp_path: Path) -> None:
    mf = write_enhanced_ct(sorted((ts_dir / "ct_dicom").iterdir()), tmp_path / "multi" / "ct.dcm")
    assert pydicom.dcmread(mf, stop_before_pixels=True).file_meta.TransferSyntaxUID.name.startswith("JPEG 2000")
    (multi,) = find_series(tmp_path / "multi")
    out = nib.load(convert_series(multi, tmp_path / "ct.nii.gz"))
    whole = nib.load(ts_converted)
    np.testing.assert_allclose(out.affine, whole.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), np.asanyarray(whole.dataobj))


# ---------------------------------------------------------------------------- gantry tilt
TILT_SPEC = PhantomSpec(shape=(48, 40, 16), spacing=(4.0, 4.0, 5.0))
_SETTINGS = ("validate_slicecount", "validate_orientation", "validate_orthogonal",
             "validate_slice_increment", "resample", "resample_padding",
             "resample_spline_interpolation_order")


def _dicom2nifti_settings() -> dict:
    import dicom2nifti.settings

    return {name: getattr(dicom2nifti.settings, name) for name in _SETTINGS}


def test_tilted_series_is_resampled_and_the_spleen_lands_where_the_phantom_drew_it(tmp_path: Path) -> None:
    from scipy import ndimage

    image, label, affine = generate_case(3, TILT_SPEC)
    write_ct_series(image, affine, tmp_path / "ct", gantry_tilt_deg=15.0, series_description="tilted")
    write_ct_series(label.astype(np.int16) * 1000, affine, tmp_path / "label", gantry_tilt_deg=15.0)
    written = tilted_affine(affine, 15.0)  # where the tilted series puts every voxel
    (ct,) = find_series(tmp_path / "ct")
    assert ct.tilt_deg == pytest.approx(15.0, abs=1e-3)
    np.testing.assert_allclose(ct.affine(), written, atol=1e-4)
    before = _dicom2nifti_settings()
    lines: list[str] = []
    img = nib.load(convert_series(ct, tmp_path / "ct.nii.gz", notify=lines.append))
    assert _dicom2nifti_settings() == before  # set for one conversion, then restored
    assert len(lines) == 1 and "gantry tilt of 15.0 degrees: resampled" in lines[0]
    aff = img.affine
    # A regular grid: perpendicular axes, the series' own pixel spacing in-plane, the slice
    # axis along the slice normal.
    axes = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(aff[:3, :2], axis=0), (4.0, 4.0), atol=1e-6)
    np.testing.assert_allclose(np.abs(axes[:, 2]), (0.0, 0.0, 1.0), atol=1e-6)
    assert img.get_data_dtype() == np.int16
    # The landmark: the spleen's centre, converted the same way, within one voxel of where the
    # phantom drew it (through the geometry the series was written with).
    (lab,) = find_series(tmp_path / "label")
    lab_img = nib.load(convert_series(lab, tmp_path / "label.nii.gz", notify=lambda line: None))
    np.testing.assert_array_equal(lab_img.affine, aff)
    spleen = np.asanyarray(lab_img.dataobj) > 500
    got = aff @ [*ndimage.center_of_mass(spleen), 1.0]
    want = written @ [*ndimage.center_of_mass(label), 1.0]
    assert np.linalg.norm(got - want) < min(img.header.get_zooms()), (got, want)
    # and the resampled CT shows the contrast-enhanced spleen there
    data = np.asanyarray(img.dataobj)
    assert 90 < float(data[spleen].mean()) < 150
    # voxels of the new grid outside the scanned (sheared) stack are air, not water
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in data.shape], indexing="ij"), -1).reshape(-1, 3)
    source = nib.affines.apply_affine(np.linalg.inv(written) @ aff, ijk)
    outside = ((source < -1) | (source > np.array(TILT_SPEC.shape))).any(axis=1).reshape(data.shape)
    assert outside.sum() > 1000 and (data[outside] == -1024).all()
    # chunks of a tilted series follow the stack
    with warnings.catch_warnings(record=True):
        plan = split_series(ct, 8)
    np.testing.assert_allclose(plan.chunks[1].origin, np.array(ct.origin) + 8 * ct.step, atol=1e-6)


def test_tilt_correction_off_refuses_a_tilted_series(tmp_path: Path, capsys) -> None:
    image, _, affine = generate_case(3, TILT_SPEC)
    write_ct_series(image, affine, tmp_path / "in", gantry_tilt_deg=-12.0)
    (series,) = find_series(tmp_path / "in")
    before = _dicom2nifti_settings()
    with pytest.raises(DicomError, match=r"12.0 degrees off the slice normal \(gantry tilt\) and tilt "
                                         "correction is off") as err:
        convert_series(series, tmp_path / "out" / "ct.nii.gz", tilt_correction=False)
    one_line_naming(err, tmp_path / "in")
    assert _dicom2nifti_settings() == before and not (tmp_path / "out").exists()
    assert main(["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "out"), "--no-tilt-correction"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "out").exists()
    assert main(["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert len(out.split()) == 1 and "warning: " in err and "gantry tilt of 12.0 degrees" in err


def test_slices_far_off_their_normal_are_not_a_tilt(tmp_path: Path) -> None:
    write_ct_series(np.zeros((8, 8, 6), np.int16), np.eye(4), tmp_path, gantry_tilt_deg=55.0)
    with pytest.raises(DicomError, match="55.0 degrees off the slice normal: not one stack"):
        find_series(tmp_path)
