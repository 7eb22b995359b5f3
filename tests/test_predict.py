"""Prediction: masks back in the original image space (synthetic LPS anisotropic volume and the
real CT), NIfTI, DICOM series and study folders (the documented choice of series), saved masks,
the CLI and refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.data.dataset import sample_ct
from spleen_helpers.ground.errors import CheckpointError, ConfigError, DataError, DicomError
from spleen_helpers.engine.predict import invertd_mask, predict_file, predict_volume, save_mask
from spleen_helpers.tools import cli
from tests.support import ThresholdNet, dice, level_for, lps_case, save_nifti, tiny_cfg

# ----------------------------------------------------------------- original image space
def test_prediction_comes_back_on_the_lps_anisotropic_grid(tmp_path: Path) -> None:
    path, hu, affine = lps_case(tmp_path)
    cfg = tiny_cfg(pixdim=(3.0, 2.0, 4.0))
    net = ThresholdNet(level_for(100, cfg))
    mask, out_affine = predict_volume(net, path, cfg, "cpu", keep_largest=False)
    assert mask.shape == hu.shape and mask.dtype == np.uint8
    assert np.array_equal(out_affine, nib.load(path).affine)
    truth = hu > 100
    assert set(np.unique(mask)) == {0, 1}
    assert dice(mask, truth) > 0.9            # a flipped or shifted mask scores near 0
    assert mask[50:55, 34:39, 18:21].any()    # the small component survives without keep_largest

    kept, _ = predict_volume(net, path, cfg, "cpu", keep_largest=True)
    assert not kept[45:60, 30:45, 16:24].any()   # only the largest component is left
    largest = truth.copy()
    largest[45:] = False
    assert dice(kept, largest) > 0.9

    saved = save_mask(mask, out_affine, tmp_path / "out" / "mask.nii.gz")
    img = nib.load(saved)
    assert img.shape == hu.shape and img.get_data_dtype() == np.uint8
    assert np.array_equal(img.affine, nib.load(path).affine)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert np.array_equal(np.asarray(img.dataobj), mask)
    assert not list((tmp_path / "out").glob(".*part*"))   # no temporary file left behind


def test_prediction_on_the_real_ct_has_its_shape_and_affine(tmp_path: Path) -> None:
    ct = sample_ct().ct
    img = nib.load(ct)
    assert img.shape == (122, 101, 112) and nib.aff2axcodes(img.affine) == ("R", "A", "S")
    cfg = CourseConfig()  # the tutorial's 1.5 x 1.5 x 2 mm resampling, from a 3 mm CT
    mask, affine = predict_volume(ThresholdNet(level_for(60, cfg)), ct, cfg, "cpu")
    assert mask.shape == img.shape and np.array_equal(affine, img.affine)
    hu = np.asanyarray(img.dataobj)
    assert dice(mask, hu > 60) > 0.85
    out = save_mask(mask, affine, tmp_path / "ct_mask.nii.gz")
    assert nib.load(out).shape == img.shape and np.array_equal(nib.load(out).affine, img.affine)


class ShapeRecorder(ThresholdNet):
    """ThresholdNet that remembers the shape of every batch of windows it is given."""

    def __init__(self, level: float) -> None:
        super().__init__(level)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        return super().forward(x)


def test_the_window_is_no_larger_than_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CT preprocessed (243 × 191 × 168) is smaller than a 256³ window: the network
    sees the image rounded up to multiples of 16, not 256³ of mostly padding; the same mask."""
    from spleen_helpers.engine.predict import load_image_for_inference, window_for

    cfg = CourseConfig(roi_size=(256, 256, 256))
    shape = tuple(load_image_for_inference(sample_ct().ct, cfg)["image"].shape[1:])
    assert any(n < r for n, r in zip(shape, cfg.roi_size))
    net = ShapeRecorder(level_for(60, cfg))
    mask, _ = predict_volume(net, sample_ct().ct, cfg, "cpu")
    window = window_for(shape, cfg)
    assert net.shapes == [window] and window != cfg.roi_size
    assert all(w % cfg.size_multiple == 0 and n <= w < n + cfg.size_multiple for w, n in zip(window, shape))
    monkeypatch.setattr("spleen_helpers.engine.predict.window_for", lambda shape, cfg: cfg.roi_size)
    padded = ShapeRecorder(level_for(60, cfg))
    assert np.array_equal(mask, predict_volume(padded, sample_ct().ct, cfg, "cpu")[0])
    assert padded.shapes == [cfg.roi_size]


class SmoothNet(torch.nn.Module):
    """Spleen probability that rises slowly with intensity: many voxels near 0.5 after
    resampling, where the fast way back to the image's grid could part from ``Invertd``."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x - self.level) * 4.0
        return torch.cat([-s, s], dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("keep", [False, True])
def test_the_fast_way_back_agrees_with_invertd(tmp_path: Path, keep: bool) -> None:
    """predict_volume resamples only the block around the spleen, once; MONAI's Invertd path
    (notebook 04) resamples the whole volume: same shape and affine, Dice >= 0.999."""
    path, hu, affine = lps_case(tmp_path)
    # thresholds between whole HU: CT values are integers, and a threshold exactly on one
    # makes thousands of voxels ties that the last bit of a float decides
    cases = [(path, tiny_cfg(pixdim=(3.0, 2.0, 4.0)), 100.5),
             (sample_ct().ct, CourseConfig(), 60.5),
             (sample_ct().ct, CourseConfig(transform_order="bundle"), 60.5)]
    for image, cfg, hu_level in cases:
        for net in (ThresholdNet(level_for(hu_level, cfg)), SmoothNet(level_for(hu_level, cfg))):
            fast, fast_affine = predict_volume(net, image, cfg, "cpu", keep_largest=keep)
            reference = invertd_mask(net, image, cfg, "cpu", keep_largest=keep)
            assert fast.shape == reference.shape and np.array_equal(fast_affine, nib.load(image).affine)
            assert reference.sum() > 1000 and dice(fast, reference) >= 0.999, (image.name, type(net).__name__)


@pytest.mark.parametrize("changes", [{}, {"transform_order": "bundle"}, {"b_min": -0.5}, {"b_min": 0.2},
                                     {"b_min": 0.5, "b_max": 0.0, "clip": False}])
def test_the_fast_preprocessing_gives_the_pipelines_image(changes: dict) -> None:
    """Read once with nibabel, cropped before the window, resampled in float32: the image and the
    grid of infer_transforms(cfg), to the last bits of a float."""
    from spleen_helpers.engine.predict import load_image_for_inference
    from spleen_helpers.engine.transforms import infer_transforms

    cfg = CourseConfig(**changes)
    fast = load_image_for_inference(sample_ct().ct, cfg)["image"]
    reference = infer_transforms(cfg)({"image": str(sample_ct().ct)})["image"]
    assert fast.shape == reference.shape and fast.dtype == torch.float32
    assert torch.allclose(torch.as_tensor(fast.affine), torch.as_tensor(reference.affine))
    assert float((fast.as_tensor() - reference.as_tensor()).abs().max()) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("order", ["tutorial", "bundle"])
def test_the_block_resampling_is_invertd_voxel_for_voxel(tmp_path: Path, order: str) -> None:
    """The same probability taken back to the image's grid by Invertd (whole volume) and by
    spleen_mask_in_image_space (the block around the spleen, one resampling): the same voxels
    but a few that sit on the 0.5 threshold."""
    from monai.transforms import Invertd

    from spleen_helpers.engine.model import infer_logits
    from spleen_helpers.engine.predict import spleen_mask_in_image_space
    from spleen_helpers.engine.transforms import infer_transforms

    path, hu, affine = lps_case(tmp_path)
    for image, cfg, level in ((path, tiny_cfg(pixdim=(3.0, 2.0, 4.0), transform_order=order), 100.5),
                              (sample_ct().ct, CourseConfig(transform_order=order), 60.5)):
        tf = infer_transforms(cfg)
        data = tf({"image": str(image)})
        for net in (ThresholdNet(level_for(level, cfg)), SmoothNet(level_for(level, cfg))):
            with torch.no_grad():
                spleen = torch.softmax(infer_logits(net, data["image"][None], cfg, torch.device("cpu"))[0], 0)
            data["pred"] = spleen[1:2]
            inverted = Invertd(keys="pred", transform=tf, orig_keys="image", nearest_interp=False)(dict(data))["pred"]
            reference = (inverted[0] > 0.5).numpy()
            img = nib.load(image)
            fast = spleen_mask_in_image_space(spleen[1], data["image"], img.shape, img.affine) > 0
            assert reference.sum() > 1000 and int((fast != reference).sum()) <= 10, (image.name, type(net).__name__)


def test_keep_largest_resamples_only_the_largest_components_block() -> None:
    """A stray island across the grid changes neither the mask nor, with keep_largest, the size of
    the block that is resampled (the island alone is resampled without it)."""
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    from spleen_helpers.engine.predict import spleen_mask_in_image_space

    grid = MetaTensor(torch.zeros(1, 40, 40, 20), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
    p = torch.zeros(40, 40, 20)
    p[5:15, 6:18, 4:12] = 0.9   # the organ
    p[34:36, 34:36, 16:18] = 0.8  # a stray island on the far side
    image_affine = np.diag([1.0, 1.0, 1.5, 1.0])
    sizes: list[tuple[int, ...]] = []
    original = SpatialResample.__call__

    def recording(self, img, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(tuple(kwargs["spatial_size"]))
        return original(self, img, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SpatialResample, "__call__", recording)
        kept = spleen_mask_in_image_space(p, grid, (80, 80, 40), image_affine, keep_largest=True)
        everything = spleen_mask_in_image_space(p, grid, (80, 80, 40), image_affine, keep_largest=False)
    island = np.zeros_like(everything)
    island[60:, 60:, 28:] = everything[60:, 60:, 28:]
    assert island.sum() > 0 and np.array_equal(kept, everything - island)
    assert np.prod(sizes[0]) < 0.5 * np.prod(sizes[1]), sizes


def test_an_empty_prediction_is_an_empty_mask(tmp_path: Path) -> None:
    path, hu, _ = lps_case(tmp_path)
    cfg = tiny_cfg(pixdim=(3.0, 2.0, 4.0))
    mask, _ = predict_volume(ThresholdNet(level_for(5000, cfg)), path, cfg, "cpu", keep_largest=True)
    assert mask.shape == hu.shape and mask.dtype == np.uint8 and not mask.any()


def test_save_mask_refuses_a_name_that_is_not_nifti(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="must end in .nii.gz or .nii"):
        save_mask(np.zeros((2, 2, 2)), np.eye(4), tmp_path / "mask.png")
    assert not list(tmp_path.iterdir())


def test_predict_file_from_nifti_and_from_a_dicom_folder(tiny_model: Path, tmp_path: Path) -> None:
    from spleen_helpers.data.phantom import PhantomSpec, generate_case
    from spleen_helpers.data.phantom_dicom import write_ct_series

    spec = PhantomSpec(shape=(48, 48, 10), spacing=(5.0, 5.0, 8.0))
    image, _, affine = generate_case(3, spec)
    ct = save_nifti(image, affine, tmp_path / "ct.nii.gz")
    r = predict_file(tiny_model, ct, tmp_path / "pred" / "mask.nii.gz", device="cpu")
    saved = nib.load(r.output)
    assert saved.shape == image.shape and np.array_equal(saved.affine, nib.load(ct).affine)
    assert r.image == ct and r.spleen_voxels == int(np.asarray(saved.dataobj).sum())
    assert r.spleen_ml == pytest.approx(r.spleen_voxels * 5 * 5 * 8 / 1000)

    write_ct_series(image, affine, tmp_path / "dicom")
    r = predict_file(tiny_model, tmp_path / "dicom", tmp_path / "pred" / "dicom_mask.nii.gz", device="cpu")
    assert r.image == tmp_path / "pred" / "dicom_mask_image.nii.gz" and r.image.is_file()
    converted = nib.load(r.image)
    saved = nib.load(r.output)
    assert saved.shape == converted.shape == image.shape
    assert np.array_equal(saved.affine, converted.affine)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Localizer (series 1), CT at 6 mm (2), CT at 3 mm (3: the most slices), dose report (999)."""
    from spleen_helpers.data.phantom import write_phantom_study

    return write_phantom_study(tmp_path_factory.mktemp("study") / "study", seed=2)


def test_predict_on_a_study_folder_segments_the_documented_choice(tiny_model: Path, study: Path,
                                                                   tmp_path: Path) -> None:
    lines: list[str] = []
    r = predict_file(tiny_model, study, tmp_path / "mask.nii.gz", device="cpu", notify=lines.append)
    assert r.series.startswith("series #3 'abdomen 3 mm'") and "23 slices" in r.series
    assert len(r.other_series) == 3
    assert r.other_series[0].startswith("series #2 'abdomen 6 mm'") and "12 slices" in r.other_series[0]
    assert "skipped (a localizer" in r.other_series[1] and "skipped (no image geometry" in r.other_series[2]
    assert len(lines) == 2 and "topogram" in lines[0] and "dose report" in lines[1]
    converted, saved = nib.load(r.image), nib.load(r.output)
    assert converted.shape == saved.shape == (48, 48, 23)
    assert np.array_equal(saved.affine, converted.affine)
    chosen = predict_file(tiny_model, study, tmp_path / "mask2.nii.gz", device="cpu", series="2",
                          notify=lambda line: None)
    assert chosen.series.startswith("series #2 ") and nib.load(chosen.output).shape == (48, 48, 12)


def test_predict_refuses_a_series_it_cannot_use(tiny_model: Path, study: Path, tmp_path: Path) -> None:
    with pytest.raises(DicomError, match="'topogram' .* was skipped: a localizer"):
        predict_file(tiny_model, study, tmp_path / "m.nii.gz", device="cpu", series="1",
                     notify=lambda line: None)
    with pytest.raises(DicomError, match="no axial CT volume to segment"):
        predict_file(tiny_model, study / "01_topogram", tmp_path / "m.nii.gz", device="cpu",
                     notify=lambda line: None)
    path, _, _ = lps_case(tmp_path)
    with pytest.raises(ConfigError, match="only be chosen in a DICOM folder"):
        predict_file(tiny_model, path, tmp_path / "m.nii.gz", device="cpu", series="2")
    assert not (tmp_path / "m.nii.gz").exists() and not (tmp_path / "m_image.nii.gz").exists()


def test_cli_predict_on_a_study_prints_the_choice_and_the_others(tiny_model: Path, study: Path,
                                                                 tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.nii.gz"
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(study), "--output", str(out),
                     "--device", "cpu"]) == 0
    printed, err = capsys.readouterr()
    lines = printed.splitlines()
    assert lines[0].startswith("DICOM series segmented (rule: axial CT, most slices, then thinnest): "
                               "series #3 'abdomen 3 mm'")
    assert [line.split(": ")[1].split()[1] for line in lines[1:4]] == ["#2", "#1", "#999"]
    assert err.count("warning: ") == 2
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(study), "--output", str(out),
                     "--device", "cpu", "--series", "2"]) == 0
    assert capsys.readouterr().out.startswith("DICOM series segmented (as asked): series #2 ")
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(study), "--output", str(out),
                     "--device", "cpu", "--series", "999"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"error: {study}: series #999 'dose report'") and "was skipped" in err


def test_predict_file_refuses_bad_input(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "mask.nii.gz"
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        predict_file(tmp_path / "missing.pth", tmp_path / "ct.nii.gz", out, device="cpu")
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"model_state_dict": Path("x")}, fh)
    with pytest.raises(CheckpointError, match="refused"):
        predict_file(evil, tmp_path / "ct.nii.gz", out, device="cpu")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(DataError, match="neither a NIfTI file"):
        predict_file(tiny_model, text, out, device="cpu")
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="fake.nii.gz: is not a readable NIfTI image"):
        predict_file(tiny_model, fake, out, device="cpu")
    with pytest.raises(DataError, match="input does not exist"):
        predict_file(tiny_model, tmp_path / "nothing.nii.gz", out, device="cpu")
    with pytest.raises(DataError, match="must end in .nii.gz or .nii"):
        predict_file(tiny_model, fake, tmp_path / "mask.png", device="cpu")
    four_d = save_nifti(np.zeros((4, 4, 4, 2), np.int16), np.eye(4), tmp_path / "4d.nii.gz")
    with pytest.raises(DataError, match="4-D"):
        predict_file(tiny_model, four_d, out, device="cpu")
    assert not out.exists()


# -------------------------------------------------------------------------------- CLI
def test_cli_predict_prints_the_volume(tiny_model: Path, tmp_path: Path, capsys) -> None:
    path, hu, _ = lps_case(tmp_path)
    out = tmp_path / "m.nii.gz"
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(path), "--output", str(out),
                     "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    voxels = int(np.asarray(nib.load(out).dataobj).sum())
    assert f"spleen volume: {voxels * 2.5 * 2.5 * 6.0 / 1000:.1f} mL ({voxels} voxels)" in printed
    assert str(out) in printed


def test_failed_mask_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    """A write that fails half-way leaves neither the final name nor a temporary behind."""
    import nibabel

    out = tmp_path / "mask.nii.gz"

    def broken_save(img, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial gzip")
        raise OSError("No space left on device")

    monkeypatch.setattr(nibabel, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_mask(np.ones((4, 4, 4), np.uint8), np.eye(4), out)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- DICOM SEG output
def _phantom_dicom(tmp_path: Path) -> tuple[Path, np.ndarray]:
    from spleen_helpers.data.phantom import PhantomSpec, generate_case
    from spleen_helpers.data.phantom_dicom import write_ct_series

    image, _, affine = generate_case(5, PhantomSpec(shape=(48, 48, 10), spacing=(5.0, 5.0, 8.0)))
    write_ct_series(image, affine, tmp_path / "dicom")
    return tmp_path / "dicom", image


def _background_only_model(tmp_path: Path) -> Path:
    """A tiny UNet whose output layer always says background: an empty prediction, for sure."""
    import torch

    from spleen_helpers.engine.checkpoint import save_checkpoint
    from spleen_helpers.ground.paths import RunLayout
    from spleen_helpers.engine.model import build_unet

    cfg = tiny_cfg()
    state = build_unet(cfg).state_dict()
    last_bias = [k for k, v in state.items() if k.endswith("bias") and v.shape == (2,)][-1]
    for key in state:
        if key.startswith(last_bias.rsplit(".", 1)[0]) and key.endswith("weight"):
            state[key] = torch.zeros_like(state[key])
    state[last_bias] = torch.tensor([10.0, -10.0])
    path = RunLayout(tmp_path / "empty_model").best_model
    save_checkpoint({"model_state_dict": state, "config": cfg.to_dict(), "epoch": 1, "best_metric": 0.0}, path)
    return path


def test_predict_writes_a_dicom_seg_equal_to_the_mask(tiny_model: Path, tmp_path: Path) -> None:
    from spleen_helpers.data.seg import dicom_seg_to_mask

    folder, _ = _phantom_dicom(tmp_path)
    r = predict_file(tiny_model, folder, tmp_path / "out" / "mask.nii.gz", device="cpu",
                     dicom_seg=tmp_path / "out" / "mask_seg.dcm")
    assert r.dicom_seg == tmp_path / "out" / "mask_seg.dcm" and r.dicom_seg.is_file()
    saved = nib.load(r.output)
    mask = np.asarray(saved.dataobj)
    assert mask.any()                                        # something to compare
    assert np.array_equal(dicom_seg_to_mask(r.dicom_seg, saved.affine, saved.shape), mask)


def test_an_empty_prediction_still_writes_a_valid_seg(tmp_path: Path) -> None:
    import highdicom as hd

    folder, _ = _phantom_dicom(tmp_path)
    r = predict_file(_background_only_model(tmp_path), folder, tmp_path / "mask.nii.gz", device="cpu",
                     dicom_seg=tmp_path / "seg.dcm")
    assert r.spleen_voxels == 0
    seg = hd.seg.segread(r.dicom_seg)
    assert seg.NumberOfFrames == 10 and not seg.pixel_array.any()
    assert seg.SegmentSequence[0].SegmentLabel == "Spleen"


def test_dicom_seg_from_nifti_input_is_refused_before_any_work(tiny_model: Path, tmp_path: Path,
                                                               capsys) -> None:
    path, _, _ = lps_case(tmp_path)
    out, seg = tmp_path / "m.nii.gz", tmp_path / "seg.dcm"
    with pytest.raises(DataError, match="a DICOM SEG needs DICOM input: a NIfTI file has no DICOM slices"):
        predict_file(tiny_model, path, out, device="cpu", dicom_seg=seg)
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(path), "--output", str(out),
                     "--dicom-seg", str(seg), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: a DICOM SEG needs DICOM input") and err.count("\n") == 1
    assert not out.exists() and not seg.exists()
    with pytest.raises(DataError, match="must end in .dcm"):
        predict_file(tiny_model, path, out, device="cpu", dicom_seg=tmp_path / "seg.nii.gz")


def test_cli_predict_dicom_seg(tiny_model: Path, tmp_path: Path, capsys) -> None:
    folder, image = _phantom_dicom(tmp_path)
    seg = tmp_path / "seg.dcm"
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(folder), "--output",
                     str(tmp_path / "m.nii.gz"), "--dicom-seg", str(seg), "--device", "cpu"]) == 0
    assert f"DICOM SEG: {seg}" in capsys.readouterr().out and seg.is_file()
    assert cli.main(["predict", "--model", str(tiny_model), "--input", str(folder), "--output",
                     str(tmp_path / "m.nii.gz"), "--fill-missing-uids", "--device", "cpu"]) == 2
    assert "--fill-missing-uids needs --dicom-seg" in capsys.readouterr().err


@pytest.mark.slow
def test_anonymised_real_series_needs_fill_missing_uids(tiny_model: Path, tmp_path: Path, capsys) -> None:
    folder = sample_ct().dicom_dir   # the real series that comes with the course (data/samples)
    args = ["predict", "--model", str(tiny_model), "--input", str(folder), "--output",
            str(tmp_path / "m.nii.gz"), "--dicom-seg", str(tmp_path / "seg.dcm"), "--device", "cpu"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "no StudyInstanceUID and no SeriesInstanceUID" in err and err.count("\n") == 1
    assert not (tmp_path / "m.nii.gz").exists() and not (tmp_path / "seg.dcm").exists()
    assert cli.main(args + ["--fill-missing-uids"]) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "derived UIDs" in captured.err
    assert (tmp_path / "seg.dcm").is_file()


# ----------------------------------------------------------------- anatomy as the judge
class SideNet(torch.nn.Module):
    """A stand-in network whose answer depends on the layout it is fed: "spleen" is the soft
    tissue in one quarter of its input grid (RAS after Orientationd: low x is the patient's
    left, low y the back). ``where`` names that quarter; ``calls`` counts forward passes."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where, self.calls = where, 0
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        nx, ny = x.shape[2], x.shape[3]
        xs = slice(int(0.15 * nx), int(0.4 * nx)) if "left" in self.where else slice(int(0.6 * nx), int(0.85 * nx))
        ys = slice(int(0.2 * ny), int(0.45 * ny)) if "back" in self.where else slice(int(0.55 * ny), int(0.8 * ny))
        quarter = torch.zeros_like(x, dtype=torch.bool)
        quarter[:, :, xs, ys] = True
        s = torch.where(quarter & (x > 0.3), 50.0, -50.0)
        return torch.cat([-s, s], dim=1)


# The bundle's route on the phantom: the bundle's order, one window holding the whole image.
BUNDLE_ON_PHANTOM = CourseConfig.synthetic(transform_order="bundle", roi_size=(96, 96, 32), profile="bundle")


@pytest.fixture(scope="module")
def phantom_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spleen_helpers.data.phantom import generate_case

    image, _, affine = generate_case(0)
    return save_nifti(image, affine, tmp_path_factory.mktemp("phantom") / "ct.nii.gz")


def test_the_bundle_is_run_turned_when_its_spleen_lies_on_the_right(phantom_ct: Path) -> None:
    from spleen_helpers.engine.predict import segment_checked

    lines: list[str] = []
    net = SideNet("right front")                          # a model that learned turned anatomy
    checked = segment_checked(net, phantom_ct, BUNDLE_ON_PHANTOM, "cpu", log=lines.append)
    assert checked.layout == "turned" and checked.side.verdict == "as expected" and net.calls == 2
    assert len(lines) == 1 and "layout turned: fed as stored, the bundle put the spleen on the patient's right" in lines[0]
    header = nib.load(phantom_ct)
    assert checked.mask.shape == header.shape and np.array_equal(checked.affine, header.affine)
    turned, _ = predict_volume(SideNet("right front"), phantom_ct, BUNDLE_ON_PHANTOM, "cpu", turned=True)
    assert np.array_equal(checked.mask, turned) and turned.sum() > 1000


def test_a_plausible_first_result_is_kept_without_a_second_run(phantom_ct: Path) -> None:
    from spleen_helpers.engine.predict import segment_checked

    lines: list[str] = []
    net = SideNet("left back")
    checked = segment_checked(net, phantom_ct, BUNDLE_ON_PHANTOM, "cpu", log=lines.append)
    assert checked.layout == "as stored" and checked.side.verdict == "as expected"
    assert net.calls == 1 and lines == []


def test_neither_layout_plausible_keeps_the_configs_result_and_warns(phantom_ct: Path) -> None:
    from spleen_helpers.engine.predict import AnatomyWarning, segment_checked

    net = SideNet("right back")                           # mirrored as stored, mirrored turned
    with pytest.warns(AnatomyWarning, match="spleen predicted on the patient's right"):
        checked = segment_checked(net, phantom_ct, BUNDLE_ON_PHANTOM, "cpu", log=lambda _: None)
    assert checked.layout == "as stored" and checked.side.verdict == "mirrored" and net.calls == 2
    assert "neither layout" in checked.reason


def test_any_other_model_on_the_wrong_side_is_a_warning_never_a_turn(phantom_ct: Path) -> None:
    from spleen_helpers.engine.predict import AnatomyWarning, segment_checked

    net = SideNet("right front")
    with pytest.warns(AnatomyWarning, match=r"ct.nii.gz: spleen predicted on the patient's right.*--lps-as-ras"):
        checked = segment_checked(net, phantom_ct, BUNDLE_ON_PHANTOM.replace(profile="synthetic"), "cpu")
    assert checked.layout == "as stored" and checked.side.verdict == "turned" and net.calls == 1


@pytest.mark.parametrize("order", ["tutorial", "bundle"])
def test_the_turned_layout_is_the_twins_input_bit_for_bit(phantom_ct: Path, tmp_path: Path, order: str) -> None:
    """Fed turned, a correctly oriented CT gives the network exactly what its LPS-as-RAS twin gives
    with unmodified settings (the bundle's own, and the tutorial's); the fast path's turned read is
    the pipeline's (infer_transforms(turned=True)) to the last bits of a float."""
    from spleen_helpers.data.anatomy import write_lps_as_ras_twin
    from spleen_helpers.engine.predict import load_image_for_inference
    from spleen_helpers.engine.transforms import infer_transforms

    cfg = CourseConfig(transform_order=order)
    twin = write_lps_as_ras_twin(phantom_ct, tmp_path / "twin.nii.gz")
    turned = load_image_for_inference(phantom_ct, cfg, turned=True)["image"]
    fed_twin = load_image_for_inference(twin, cfg)["image"]
    assert torch.equal(turned.as_tensor(), fed_twin.as_tensor()) and torch.equal(turned.affine, fed_twin.affine)
    reference = infer_transforms(cfg, turned=True)({"image": str(phantom_ct)})["image"]
    assert turned.shape == reference.shape and torch.allclose(turned.affine, reference.affine)
    assert float((turned.as_tensor() - reference.as_tensor()).abs().max()) < 1e-4


def test_a_twin_read_turned_gives_the_true_mask_on_the_files_own_header(phantom_ct: Path, tmp_path: Path) -> None:
    from spleen_helpers.data.anatomy import write_lps_as_ras_twin

    twin = write_lps_as_ras_twin(phantom_ct, tmp_path / "twin.nii.gz")
    net = SideNet("left back")
    true, _ = predict_volume(net, phantom_ct, BUNDLE_ON_PHANTOM, "cpu")
    fixed, affine = predict_volume(net, twin, BUNDLE_ON_PHANTOM, "cpu", turned=True)
    assert np.array_equal(true, fixed) and np.array_equal(affine, nib.load(twin).affine)
    naive, _ = predict_volume(net, twin, BUNDLE_ON_PHANTOM, "cpu")
    assert dice(naive, true) < 0.1                        # read as stored, the twin's "left" is the right


def test_predict_lps_as_ras_reads_the_twin_turned_and_says_where_the_spleen_is(
        phantom_ct: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from spleen_helpers.data.anatomy import write_lps_as_ras_twin
    import spleen_helpers.engine.predict as predict_module

    twin = write_lps_as_ras_twin(phantom_ct, tmp_path / "twin.nii.gz")
    cfg = BUNDLE_ON_PHANTOM.replace(profile="synthetic")
    monkeypatch.setattr(predict_module, "load_model_or_bundle", lambda *_a, **_k: (SideNet("left back"), cfg))
    assert cli.main(["predict", "--model", "any.pth", "--input", str(twin), "--output",
                     str(tmp_path / "m.nii.gz"), "--device", "cpu", "--lps-as-ras"]) == 0
    out = capsys.readouterr()
    assert "anatomy: spleen" in out.out and "patient's left" in out.out and "(CT fed turned)" in out.out
    monkeypatch.setattr(predict_module, "load_model_or_bundle", lambda *_a, **_k: (SideNet("right front"), cfg))
    assert cli.main(["predict", "--model", "any.pth", "--input", str(twin), "--output",
                     str(tmp_path / "n.nii.gz"), "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "warning:" in out.err and "spleen predicted on the patient's right" in out.err and "--lps-as-ras" in out.err
