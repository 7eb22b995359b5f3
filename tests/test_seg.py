"""DICOM SEG output: the mask on the source slices (phantom series and the real Siemens series),
written with highdicom and read back with highdicom and pydicom: one "Spleen" segment (SCT
78961009), the source's Study/Series/SOP Instance UIDs, the source slices' geometry, and the
round trip equal to the NIfTI mask voxel for voxel; empty masks, anonymised UIDs, wrong grids."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

from spleen_helpers.data.dicom.series import DicomWarning
from spleen_helpers.data.dicom.convert import convert_series
from spleen_helpers.data.dicom.scan import find_series
from spleen_helpers.data.dicom.hu import load_series_hu
from spleen_helpers.data.seg import dicom_seg_to_mask, mask_to_frames, series_for_mask, write_dicom_seg
from spleen_helpers.ground.errors import DataError, DicomError
from spleen_helpers.data.phantom import PhantomSpec, generate_case
from spleen_helpers.data.phantom_dicom import write_ct_series
from spleen_helpers.data.dataset import sample_ct

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def to_grid(array: np.ndarray, affine: np.ndarray, target: np.ndarray) -> np.ndarray:
    return apply_orientation(array, ornt_transform(io_orientation(affine), io_orientation(target)))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):
    """A phantom written as DICOM (LPS) and converted back with dicom2nifti (LAS): the mask lives
    on the converted grid, the SEG must land on the DICOM slices."""
    tmp = tmp_path_factory.mktemp("phantom")
    image, label, affine = generate_case(2, PhantomSpec(shape=(48, 40, 14)))
    label[:, :, :3] = 0                                   # spleen-free slices at both ends
    label[:, :, -2:] = 0
    write_ct_series(image, affine, tmp / "dicom", patient_id="SEG^TEST")
    series = find_series(tmp / "dicom")[0]
    nifti = nib.load(convert_series(series, tmp / "ct.nii.gz"))
    mask = to_grid(label, affine, nifti.affine).astype(np.uint8)
    assert np.array_equal(to_grid(image, affine, nifti.affine), np.asanyarray(nifti.dataobj))
    return tmp, series, mask, nifti.affine, label


def test_the_mask_lands_on_the_source_slices(phantom) -> None:
    _, series, mask, affine, label = phantom
    frames = mask_to_frames(mask, affine, series)
    assert frames.shape == (series.num_slices, series.rows, series.columns)
    # load_series_hu's (column, row, slice) array is the phantom as written: frames are its slices
    assert np.array_equal(frames, np.transpose(label, (2, 1, 0)))


def test_round_trip_equals_the_mask_and_references_the_source(phantom) -> None:
    tmp, series, mask, affine, _ = phantom
    out = write_dicom_seg(mask, affine, tmp / "dicom", tmp / "out" / "seg.dcm")
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]    # no temporary left
    back = dicom_seg_to_mask(out, affine, mask.shape)
    assert back.dtype == np.uint8 and np.array_equal(back, mask)

    ds = pydicom.dcmread(out)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series.files]
    assert ds.SOPClassUID == SEGMENTATION_STORAGE and ds.Modality == "SEG"
    assert ds.SegmentationType == "BINARY" and len(ds.SegmentSequence) == 1
    segment = ds.SegmentSequence[0]
    assert segment.SegmentLabel == "Spleen" and segment.SegmentAlgorithmType == "AUTOMATIC"
    code = segment.SegmentedPropertyTypeCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("78961009", "SCT", "Spleen")
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert ds.PatientID == "SEG^TEST" and ds.SeriesInstanceUID != series.uid
    referenced = ds.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series.uid
    assert {r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence} == \
        {s.SOPInstanceUID for s in sources}

    # Frame geometry: each frame sits where its source slice is, with that slice's pixels.
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in sources[0].PixelSpacing]
    assert np.allclose([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                       [float(v) for v in sources[0].ImageOrientationPatient])
    assert (ds.Rows, ds.Columns) == (sources[0].Rows, sources[0].Columns)
    by_uid = {s.SOPInstanceUID: s for s in sources}
    index_of = {s.SOPInstanceUID: i for i, s in enumerate(sources)}
    nonempty = [k for k in range(mask.shape[2]) if mask[:, :, k].any()]
    assert ds.NumberOfFrames == len(nonempty) < series.num_slices      # empty slices omitted
    pixels = ds.pixel_array.reshape(ds.NumberOfFrames, ds.Rows, ds.Columns)
    frames = mask_to_frames(mask, affine, series)
    for frame, group in zip(pixels, ds.PerFrameFunctionalGroupsSequence):
        source_uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        source = by_uid[source_uid]
        assert np.allclose([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in source.ImagePositionPatient])
        assert np.array_equal(frame, frames[index_of[source_uid]])


def test_an_empty_mask_still_gives_a_valid_seg(phantom) -> None:
    tmp, series, mask, affine, _ = phantom
    out = write_dicom_seg(np.zeros_like(mask), affine, series, tmp / "empty.dcm")
    seg = hd.seg.segread(out)
    assert seg.NumberOfFrames == series.num_slices        # every slice says: no spleen here
    assert not seg.pixel_array.any()
    assert not dicom_seg_to_mask(out, affine, mask.shape).any()


def test_wrong_grid_name_and_folder_are_refused(phantom, tmp_path: Path) -> None:
    tmp, series, mask, affine, _ = phantom
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    with pytest.raises(DicomError, match="is not on this series' grid"):
        mask_to_frames(mask, shifted, series)
    with pytest.raises(DicomError, match="none of its 1 series has the mask's grid"):
        write_dicom_seg(mask[:, :, :-1], affine, tmp / "dicom", tmp_path / "seg.dcm")
    with pytest.raises(DataError, match="must end in .dcm"):
        write_dicom_seg(mask, affine, series, tmp_path / "seg.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_the_series_is_found_by_its_grid_in_a_study_folder(tmp_path: Path) -> None:
    small, _, small_affine = generate_case(3, PhantomSpec(shape=(32, 32, 8)))
    big, big_label, big_affine = generate_case(4, PhantomSpec(shape=(40, 36, 10)))
    write_ct_series(small, small_affine, tmp_path / "study" / "a", series_description="small")
    write_ct_series(big, big_affine, tmp_path / "study" / "b", series_description="big")
    found = series_for_mask(tmp_path / "study", big_affine, big_label.shape)
    assert found.description == "big"
    out = write_dicom_seg(big_label, big_affine, tmp_path / "study", tmp_path / "seg.dcm")
    assert np.array_equal(dicom_seg_to_mask(out, big_affine, big_label.shape), big_label)


# ------------------------------------------------------------------ the real Siemens series
@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """The real series that comes with the course (data/samples), and its spleen mask."""
    sample = sample_ct()
    folder, reference = sample.dicom_dir, sample.dicom_seg
    series = find_series(folder)[0]
    ct = nib.load(convert_series(series, tmp_path_factory.mktemp("real") / "ct.nii.gz"))
    ref = nib.load(reference)
    assert np.allclose(ref.affine, ct.affine)
    spleen = (np.asanyarray(ref.dataobj) == sample.SPLEEN_LABEL).astype(np.uint8)
    return folder, series, spleen, ct.affine


def test_real_series_frames_put_the_spleen_on_soft_tissue(real) -> None:
    folder, series, spleen, affine = real
    frames = mask_to_frames(spleen, affine, series)
    hu, _ = load_series_hu(series)                 # (column, row, slice) in the series' own order
    slices = np.transpose(hu, (2, 1, 0))
    inside = float(slices[frames > 0].mean())
    assert int(frames.sum()) == 130_634 and 60 < inside < 100   # ~80 HU; a wrong flip is far off


def test_real_series_without_uids_is_refused_unless_asked(real, tmp_path: Path) -> None:
    folder, series, spleen, affine = real
    with pytest.raises(DicomError) as exc:
        write_dicom_seg(spleen, affine, folder, tmp_path / "seg.dcm")
    msg = str(exc.value)
    assert "\n" not in msg and "no StudyInstanceUID and no SeriesInstanceUID" in msg
    assert "fill_missing_uids=True" in msg and not (tmp_path / "seg.dcm").exists()

    with pytest.warns(DicomWarning, match="derived UIDs"):
        out = write_dicom_seg(spleen, affine, folder, tmp_path / "seg.dcm", fill_missing_uids=True)
    assert np.array_equal(dicom_seg_to_mask(out, affine, spleen.shape), spleen)
    ds = pydicom.dcmread(out)
    metas = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
             for f in series.files}
    referenced = {r.ReferencedSOPInstanceUID
                  for r in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == metas and len(metas) == 20   # the slices' own SOP Instance UIDs
