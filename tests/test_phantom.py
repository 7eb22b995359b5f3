"""The synthetic CT phantom: realistic HU, anatomy in the right place, Task09 layout, determinism."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from spleen_helpers.data.dicom.scan import find_series
from spleen_helpers.ground.errors import DicomError
from spleen_helpers.data.phantom import PhantomSpec, ensure_synthetic_dataset, generate_case, write_phantom_study, write_synthetic_dataset
from spleen_helpers.data.phantom_dicom import tilted_affine, write_ct_series, write_enhanced_ct
from tests.support import DICOM_SPEC, one_line_naming

SEEDS = [0, 1, 2, 3, 4, 5]
# The keys of the real MSD Task09_Spleen/dataset.json.
TASK09_KEYS = {"name", "description", "reference", "licence", "release", "tensorImageSize",
               "modality", "labels", "numTraining", "numTest", "training", "test"}
SMALL = PhantomSpec(shape=(32, 32, 10))


@pytest.fixture(scope="module")
def cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [generate_case(seed) for seed in SEEDS]


def world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """RAS millimetre coordinates of voxel indices (N, 3)."""
    return nib.affines.apply_affine(affine, ijk)


def radial_mm(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """In-plane distance (mm) of every voxel centre from the body axis (world x = y = 0)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = world(affine, ijk)
    return np.hypot(xyz[:, 0], xyz[:, 1]).reshape(shape)


def mode_hu(values: np.ndarray, lo: float, hi: float, width: float = 20.0) -> float:
    """Centre of the most populated ``width``-HU bin of ``values`` within [lo, hi)."""
    counts, edges = np.histogram(values, bins=np.arange(lo, hi + width, width))
    i = int(np.argmax(counts))
    return float(edges[i] + width / 2)


def test_air_outside_the_body_is_minus_1000(cases) -> None:
    for image, _, affine in cases:
        outside = radial_mm(affine, image.shape) > 130  # the body's half-width is at most 115 mm
        assert outside.sum() > 1000
        air = image[outside].astype(float)
        assert abs(np.median(air) + 1000) <= 2 and np.percentile(np.abs(air + 1000), 99) < 60


def test_fat_and_soft_tissue_peaks(cases) -> None:
    for image, _, _ in cases:
        body = image[image > -500].astype(float)
        assert -130 <= mode_hu(body, -300, 0) <= -70        # subcutaneous and visceral fat
        assert 10 <= mode_hu(body, 0, 90) <= 70             # muscle, liver, bowel
        assert np.mean((body > -140) & (body < -60)) > 0.15  # fat is a large share of the body


def test_spleen_is_contrast_enhanced_100_to_130_hu(cases) -> None:
    medians = []
    for image, label, _ in cases:
        core = ndimage.binary_erosion(label, iterations=1)  # away from partial-volume edges
        assert core.sum() > 200
        med = float(np.median(image[core]))
        assert 92 <= med <= 138, med   # 100-130 HU plus at most 8 HU of texture
        medians.append(med)
    assert 100 <= np.mean(medians) <= 130
    assert np.ptp(medians) > 5  # the enhancement varies between cases


def test_spine_is_bone_at_the_posterior_midline(cases) -> None:
    for image, label, affine in cases:
        bone = image >= 400
        assert bone.any(axis=(0, 1)).all(), "the spine must run through every slice"
        xyz = world(affine, np.argwhere(bone))
        assert abs(xyz[:, 0].mean()) < 10 and xyz[:, 1].mean() < -30  # midline, posterior
        assert not (bone & (label > 0)).any()


def test_spleen_is_on_the_patients_left_and_posterior(cases) -> None:
    for image, label, affine in cases:
        img = nib.Nifti1Image(label, affine)
        assert nib.aff2axcodes(affine) != ("R", "A", "S")  # stored non-RAS on purpose
        canon = nib.as_closest_canonical(img)
        assert nib.aff2axcodes(canon.affine) == ("R", "A", "S")
        data = np.asarray(canon.dataobj)
        centre = np.argwhere(data > 0).mean(axis=0)
        x_mm, y_mm, _ = world(canon.affine, centre[None])[0]
        assert x_mm < -30, "spleen must be on the patient's left (-x in RAS)"
        assert y_mm < 0, "spleen must be posterior (-y in RAS)"
        # In RAS voxel order the left of the patient is the low-index half of the first axis.
        assert centre[0] < data.shape[0] / 2


def test_spleen_size_varies_between_cases(cases) -> None:
    volumes = np.array([label.sum() for _, label, _ in cases], dtype=float)
    assert volumes.min() > 500
    assert volumes.std() / volumes.mean() > 0.1
    for _, label, _ in cases:
        _, n = ndimage.label(label)
        assert n == 1  # one organ


def test_deterministic_by_seed() -> None:
    a, b = generate_case(7, SMALL), generate_case(7, SMALL)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = generate_case(8, SMALL)
    assert not np.array_equal(a[0], c[0])


def test_anisotropic_spacing_and_non_ras_orientation(tmp_path: Path) -> None:
    out = write_synthetic_dataset(tmp_path / "s", num_cases=1, spec=SMALL)
    img = nib.load(out / "imagesTr" / "spleen_1.nii.gz")
    zooms = tuple(float(z) for z in img.header.get_zooms())
    assert zooms == SMALL.spacing and len(set(zooms)) > 1
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # like DICOM-derived NIfTI
    assert img.get_data_dtype() == np.int16
    label = nib.load(out / "labelsTr" / "spleen_1.nii.gz")
    assert np.allclose(label.affine, img.affine) and label.shape == img.shape
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1}


def test_dataset_json_has_the_task09_keys_and_loads_with_monai(tmp_path: Path) -> None:
    from monai.data import load_decathlon_datalist

    out = write_synthetic_dataset(tmp_path / "s", num_cases=3, spec=SMALL, seed=2)
    meta = json.loads((out / "dataset.json").read_text())
    assert TASK09_KEYS <= set(meta) and set(meta) - TASK09_KEYS == {"synthetic"}
    assert meta["modality"] == {"0": "CT"} and meta["labels"] == {"0": "background", "1": "spleen"}
    assert meta["numTraining"] == len(meta["training"]) == 3 and meta["numTest"] == len(meta["test"]) == 4
    assert meta["training"][0] == {"image": "./imagesTr/spleen_1.nii.gz", "label": "./labelsTr/spleen_1.nii.gz"}
    assert meta["test"][0] == {"image": "./imagesTs/spleen_test_1.nii.gz", "label": "./labelsTs/spleen_test_1.nii.gz"}
    for split, count in (("training", 3), ("test", 4)):
        items = load_decathlon_datalist(out / "dataset.json", is_segmentation=True, data_list_key=split,
                                        base_dir=out)
        assert len(items) == count and all(Path(i["image"]).is_file() and Path(i["label"]).is_file()
                                           for i in items)


def test_test_cases_are_held_out_and_get_no_dicom(tmp_path: Path) -> None:
    """Test phantoms are other cases than the training ones (other seeds), with labels, and
    only the training cases are exported as DICOM."""
    out = write_synthetic_dataset(tmp_path / "s", num_cases=2, spec=SMALL, seed=0, num_test=2, dicom=True)
    train_imgs = [np.asarray(nib.load(p).dataobj) for p in sorted((out / "imagesTr").glob("*.nii.gz"))]
    test_imgs = [np.asarray(nib.load(p).dataobj) for p in sorted((out / "imagesTs").glob("*.nii.gz"))]
    assert len(test_imgs) == 2 and len(list((out / "labelsTs").glob("*.nii.gz"))) == 2
    assert not any(np.array_equal(a, b) for a in train_imgs for b in test_imgs)
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["spleen_1", "spleen_2"]
    none = write_synthetic_dataset(tmp_path / "n", num_cases=1, spec=SMALL, num_test=0)
    assert json.loads((none / "dataset.json").read_text())["test"] == []


def test_existing_data_set_is_not_overwritten_without_force(tmp_path: Path) -> None:
    from spleen_helpers.ground.errors import DataError

    out = write_synthetic_dataset(tmp_path / "s", num_cases=1, spec=SMALL)
    with pytest.raises(DataError, match="already exists"):
        write_synthetic_dataset(out, num_cases=1, spec=SMALL)
    write_synthetic_dataset(out, num_cases=2, spec=SMALL, overwrite=True)
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    with pytest.raises(DataError, match="num_cases"):
        write_synthetic_dataset(tmp_path / "t", num_cases=0)


def stamps(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_ensure_reuses_a_matching_set_and_never_silently_replaces_another(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from spleen_helpers.ground.errors import DataError

    out = tmp_path / "s"
    assert ensure_synthetic_dataset(out, num_cases=2, spec=SMALL, seed=1, num_test=1) == out
    before = stamps(out)
    ensure_synthetic_dataset(out, num_cases=2, spec=SMALL, seed=1, num_test=1)
    assert stamps(out) == before  # reused, nothing rewritten

    for changes, words in (({"seed": 2}, "seed 1 (asked: 2)"), ({"num_cases": 3}, "num_training 2 (asked: 3)"),
                           ({"spec": SMALL.replace(shape=(24, 24, 8))}, "shape_xyz"),
                           ({"num_test": 0}, "num_test 1 (asked: 0)")):
        args = {"num_cases": 2, "spec": SMALL, "seed": 1, "num_test": 1} | changes
        with pytest.raises(DataError, match="other parameters") as err:
            ensure_synthetic_dataset(out, **args)  # a model or saved masks may belong to this set
        assert words in str(err.value) and "\n" not in str(err.value)
    assert stamps(out) == before

    lines: list[str] = []
    (out / "labelsTr" / "spleen_2.nii.gz").unlink()  # an incomplete set is rebuilt, and says so
    ensure_synthetic_dataset(out, num_cases=2, spec=SMALL, seed=1, num_test=1, log=lines.append)
    assert (out / "labelsTr" / "spleen_2.nii.gz").is_file() and "incomplete" in lines[-1]
    meta = json.loads((out / "dataset.json").read_text())
    meta["synthetic"]["generator_version"] = 1     # an older generator's set is rebuilt, and says so
    (out / "dataset.json").write_text(json.dumps(meta))
    ensure_synthetic_dataset(out, num_cases=2, spec=SMALL, seed=1, num_test=1, log=lines.append)
    assert "generator version 1" in lines[-1]

    assert not (out / "dicom").exists()
    before = stamps(out)
    ensure_synthetic_dataset(out, num_cases=2, spec=SMALL, seed=1, num_test=1, dicom=True)  # added in place
    assert len(list((out / "dicom").iterdir())) == 2
    assert {k: v for k, v in stamps(out).items() if k.startswith(("images", "labels"))} == \
        {k: v for k, v in before.items() if k.startswith(("images", "labels"))}
    before = stamps(out)
    ensure_synthetic_dataset(out, num_cases=2, spec=SMALL, seed=1, num_test=1)  # a DICOM set serves NIfTI users too
    assert stamps(out) == before

    monkeypatch.setenv("SPLEEN_COURSE_HOME", str(tmp_path / "home"))
    default = ensure_synthetic_dataset(num_cases=1, spec=SMALL, num_test=0)
    assert default == tmp_path / "home" / "data" / "synthetic" and (default / "dataset.json").is_file()
    other_seed = ensure_synthetic_dataset(num_cases=1, spec=SMALL, num_test=0, seed=3)  # a folder of its own
    assert other_seed == tmp_path / "home" / "data" / "synthetic-seed3"
    assert json.loads((default / "dataset.json").read_text())["synthetic"]["seed"] == 0


def test_cli_dicom_writes_one_series_per_case(tmp_path: Path) -> None:
    import pydicom

    from spleen_helpers.tools.cli import main

    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--cases", "2", "--shape", "6", "24", "24", "--dicom"]) == 0
    series = sorted((out / "dicom").iterdir())
    assert [p.name for p in series] == ["spleen_1", "spleen_2"]
    uids = set()
    for folder in series:
        files = sorted(f for f in folder.rglob("*") if f.is_file())
        assert len(files) == 6  # one file per slice
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        assert {h.Modality for h in headers} == {"CT"}
        assert len({h.SeriesInstanceUID for h in headers}) == 1
        uids.add(headers[0].SeriesInstanceUID)
    assert len(uids) == 2
    assert json.loads((out / "dataset.json").read_text())["synthetic"]["dicom"] is True
    assert os.listdir(out / "imagesTr") and os.listdir(out / "labelsTr")


# ----------------------------------------------------------------------- DICOM export




def test_written_files_are_valid_ct_with_lps_geometry(synth_dir: Path, case) -> None:
    image, _, affine = case
    files = sorted(synth_dir.glob("*.dcm"))
    assert len(files) == DICOM_SPEC.shape[2]
    first, last = (pydicom.dcmread(f) for f in (files[0], files[-1]))
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage == first.SOPClassUID
    assert first.Modality == "CT" and first.PatientID == "P1"
    assert first.SeriesInstanceUID == last.SeriesInstanceUID
    assert first.StudyInstanceUID == last.StudyInstanceUID
    assert first.FrameOfReferenceUID == last.FrameOfReferenceUID
    assert first.SOPInstanceUID != last.SOPInstanceUID
    assert (first.InstanceNumber, last.InstanceNumber) == (1, DICOM_SPEC.shape[2])
    # RAS diag(-sx, -sy, sz) is LPS diag(sx, sy, sz): plain axial orientation.
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.PixelSpacing] == [2.5, 3.0]  # (row spacing, column spacing)
    assert float(first.SliceThickness) == float(first.SpacingBetweenSlices) == 5.0
    lps_origin = np.diag([-1, -1, 1]) @ affine[:3, 3]
    np.testing.assert_allclose([float(v) for v in first.ImagePositionPatient], lps_origin, atol=1e-4)
    np.testing.assert_allclose(float(last.ImagePositionPatient[2]) - float(first.ImagePositionPatient[2]),
                               5.0 * (DICOM_SPEC.shape[2] - 1))
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, -1024.0)
    assert first.pixel_array.dtype == np.uint16 and first.pixel_array.shape == (32, 40)
    np.testing.assert_array_equal(first.pixel_array.astype(np.int32) - 1024, image[:, :, 0].T)


def test_write_refuses_values_outside_the_stored_range(tmp_path: Path) -> None:
    vol = np.full((4, 4, 4), -2000, dtype=np.int16)
    with pytest.raises(DicomError, match="do not fit") as err:
        write_ct_series(vol, np.eye(4), tmp_path / "x")
    one_line_naming(err, tmp_path / "x")


def test_rewriting_a_shorter_series_removes_stale_slices(tmp_path: Path) -> None:
    write_ct_series(np.zeros((4, 4, 8), np.int16), np.eye(4), tmp_path)
    write_ct_series(np.zeros((4, 4, 5), np.int16), np.eye(4), tmp_path)
    assert len(list(tmp_path.glob("*.dcm"))) == 5
    assert find_series(tmp_path)[0].num_slices == 5


def test_tilted_series_shears_the_positions_by_the_angle(case, tmp_path: Path) -> None:
    image, _, affine = case
    files = write_ct_series(image, affine, tmp_path / "t", gantry_tilt_deg=20.0, series_number=7)
    first, second, last = (pydicom.dcmread(f, stop_before_pixels=True) for f in (files[0], files[1], files[-1]))
    assert float(first.GantryDetectorTilt) == 20.0 and first.SeriesNumber == 7
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]  # slices stay axial
    run = np.array(last.ImagePositionPatient, float) - np.array(first.ImagePositionPatient, float)
    assert np.degrees(np.arctan2(run[1], run[2])) == pytest.approx(20.0, abs=1e-4)  # y (posterior) per z
    step = np.array(second.ImagePositionPatient, float) - np.array(first.ImagePositionPatient, float)
    np.testing.assert_allclose(step, [0.0, 5.0 * np.tan(np.radians(20.0)), 5.0], atol=1e-5)
    # tilted_affine is the geometry the files describe, in RAS
    np.testing.assert_allclose(np.diag([-1, -1, 1]) @ tilted_affine(affine, 20.0)[:3, 2], step, atol=1e-5)
    straight = write_ct_series(image, affine, tmp_path / "s")
    assert pydicom.dcmread(straight[0]).SeriesInstanceUID != first.SeriesInstanceUID
    with pytest.raises(DicomError, match="within"):
        write_ct_series(image, affine, tmp_path / "x", gantry_tilt_deg=75.0)


def test_phantom_study_has_the_series_a_pacs_export_holds(tmp_path: Path) -> None:
    study = write_phantom_study(tmp_path / "study", seed=4)
    headers = {d.name: [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(d.iterdir())]
               for d in study.iterdir()}
    assert {name: len(h) for name, h in headers.items()} == {
        "01_topogram": 3, "02_ct": 12, "03_ct_thin": 23, "99_dose_report": 1}
    assert len({h.StudyInstanceUID for hs in headers.values() for h in hs}) == 1
    assert {name: hs[0].SeriesNumber for name, hs in headers.items()} == {
        "01_topogram": 1, "02_ct": 2, "03_ct_thin": 3, "99_dose_report": 999}
    topo = headers["01_topogram"]
    assert all("LOCALIZER" in h.ImageType for h in topo)
    assert len({tuple(h.ImagePositionPatient) for h in topo}) == 1
    dose = headers["99_dose_report"][0]
    assert dose.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and "ImagePositionPatient" not in dose
    # the thin reconstruction holds the CT's slices at even positions and their means between
    thick, thin = find_series(study / "02_ct")[0], find_series(study / "03_ct_thin")[0]
    assert thin.slice_step == pytest.approx(thick.slice_step / 2)
    np.testing.assert_allclose(thin.origin, thick.origin)
    image, _, _ = generate_case(4, PhantomSpec(shape=(48, 48, 12), spacing=(5.0, 5.0, 6.0)))
    np.testing.assert_array_equal(pydicom.dcmread(thin.files[4]).pixel_array.astype(np.int32) - 1024,
                                  image[:, :, 2].T)


def test_enhanced_ct_holds_every_slice_as_a_frame(synth_dir: Path) -> None:
    files = sorted(synth_dir.glob("*.dcm"))
    out = write_enhanced_ct(files, synth_dir.parent / "mf" / "ct.dcm", series_number=9)
    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == pydicom.uid.LegacyConvertedEnhancedCTImageStorage
    assert int(ds.NumberOfFrames) == len(files) and ds.SeriesNumber == 9
    positions = sorted(tuple(float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
                       for item in ds.PerFrameFunctionalGroupsSequence)
    want = sorted(tuple(float(v) for v in pydicom.dcmread(f).ImagePositionPatient) for f in files)
    np.testing.assert_allclose(positions, want)
    assert not list(out.parent.glob(".*part*"))  # written atomically


def test_lps_as_ras_writes_the_same_phantom_with_a_lying_header(tmp_path: Path) -> None:
    """Same voxels, the affine with world x and y negated, dataset.json unchanged; the DICOM series,
    which cannot carry that mistake, keep the true geometry."""
    from spleen_helpers.data.anatomy import LPS_AS_RAS
    from spleen_helpers.tools.cli import main

    assert main(["synth", "--out", str(tmp_path / "true"), "--cases", "1", "--test-cases", "1", "--dicom"]) == 0
    assert main(["synth", "--out", str(tmp_path / "twin"), "--cases", "1", "--test-cases", "1", "--dicom",
                 "--lps-as-ras"]) == 0
    assert (tmp_path / "true/dataset.json").read_text() == (tmp_path / "twin/dataset.json").read_text()
    for name in ("imagesTr/spleen_1.nii.gz", "labelsTr/spleen_1.nii.gz", "imagesTs/spleen_test_1.nii.gz"):
        true, twin = nib.load(tmp_path / "true" / name), nib.load(tmp_path / "twin" / name)
        assert np.array_equal(np.asanyarray(true.dataobj), np.asanyarray(twin.dataobj)), name
        assert np.array_equal(twin.affine, LPS_AS_RAS @ true.affine), name
    for true, twin in zip(sorted((tmp_path / "true/dicom/spleen_1").iterdir()),
                          sorted((tmp_path / "twin/dicom/spleen_1").iterdir())):
        a, b = pydicom.dcmread(true), pydicom.dcmread(twin)
        assert a.ImagePositionPatient == b.ImagePositionPatient
        assert a.ImageOrientationPatient == b.ImageOrientationPatient
