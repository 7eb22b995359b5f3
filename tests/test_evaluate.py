"""Evaluation: metrics on hand-made masks, predictions back in the original image space
(synthetic LPS anisotropic volume and the real CT), saved masks, reports, CLI and refusals."""

from __future__ import annotations

import csv
import json
import math
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from spleen_helpers import cli
from spleen_helpers.checkpoint import save_checkpoint
from spleen_helpers.config import CourseConfig
from spleen_helpers.errors import CheckpointError, ConfigError, DataError
from spleen_helpers.evaluate import (
    MASKS_DIR,
    case_metrics,
    evaluate_cases,
    find_or_train_model,
    predict_file,
    predict_volume,
    save_mask,
)
from spleen_helpers.model import build_unet
from spleen_helpers.train import BEST_MODEL_NAME

TINY = dict(channels=(4, 8, 16), strides=(2, 2), max_epochs=1, val_interval=1)


def tiny_cfg(**kw) -> CourseConfig:
    return CourseConfig.synthetic(**(TINY | kw))


class ThresholdNet(torch.nn.Module):
    """A stand-in "network": spleen where the scaled intensity exceeds ``level``.

    Its output depends only on the voxel's own value, so the true answer in the original
    space is known exactly: a flipped, shifted or resampled-wrong prediction cannot pass.
    """

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level
        self.unused = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x - self.level) * 50.0
        return torch.cat([-s, s], dim=1)


def level_for(hu: float, cfg: CourseConfig) -> float:
    return (hu - cfg.a_min) / (cfg.a_max - cfg.a_min)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(array, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, path)
    return path


def lps_case(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An asymmetric volume on an LPS, anisotropic grid: a body box with a bright inner box
    near one corner and a small bright blob elsewhere (two components)."""
    hu = np.full((96, 80, 24), -1000, np.int16)
    hu[6:60, 30:76, 2:22] = 0            # "body" (foreground), off-centre
    hu[10:40, 50:72, 4:16] = 200         # large bright box near one corner
    hu[50:55, 34:39, 18:21] = 200        # small bright blob: a second component
    affine = np.diag([-2.5, -2.5, 6.0, 1.0])
    affine[:3, 3] = [120.0, 100.0, -70.0]
    return save_nifti(hu, affine, tmp_path / "lps_ct.nii.gz"), hu, affine


# ------------------------------------------------------------------------------ metrics
def test_shifted_cubes_have_the_known_dice_iou_and_volumes() -> None:
    ref = np.zeros((30, 30, 30), np.uint8)
    ref[10:20, 10:20, 10:20] = 1
    pred = np.roll(ref, 2, axis=0)
    m = case_metrics(pred, ref, spacing=(2.0, 1.0, 1.0))
    assert m.dice == pytest.approx(0.8)
    assert m.iou == pytest.approx(800 / 1200)
    assert m.ref_ml == pytest.approx(1000 * 2.0 / 1000) and m.pred_ml == pytest.approx(2.0)
    assert m.volume_error_ml == pytest.approx(0.0)
    assert 0 < m.asd_mm <= m.hd95_mm <= 4.0 + 1e-6   # no surface point is further than 2 voxels x 2 mm
    assert m.note == ""


@pytest.mark.parametrize("axis, spacing, expected", [
    (2, (1.0, 1.0, 2.5), 5.0),   # plates 2 slices apart along z at 2.5 mm
    (0, (3.0, 1.0, 1.0), 6.0),   # 2 voxels apart along x at 3 mm: spacing taken per axis
])
def test_surface_distances_are_millimetres_along_the_right_axis(axis, spacing, expected) -> None:
    ref = np.zeros((12, 12, 12), np.uint8)
    index = [slice(2, 10)] * 3
    index[axis] = 4
    ref[tuple(index)] = 1
    pred = np.roll(ref, 2, axis=axis)
    m = case_metrics(pred, ref, spacing)
    assert m.dice == 0.0 and m.iou == 0.0
    assert m.hd95_mm == pytest.approx(expected)
    assert m.asd_mm == pytest.approx(expected)


def test_identical_masks_score_perfectly() -> None:
    ref = np.zeros((16, 16, 16), bool)
    ref[3:9, 4:12, 5:10] = True
    m = case_metrics(torch.from_numpy(ref), ref.astype(np.uint8), (1.5, 1.5, 2.0))
    assert (m.dice, m.iou, m.hd95_mm, m.asd_mm) == (1.0, 1.0, 0.0, 0.0)
    assert m.pred_voxels == m.ref_voxels == 6 * 8 * 5


@pytest.mark.parametrize("pred_empty, ref_empty, dice_expected, note", [
    (True, False, 0.0, "prediction is empty"),
    (False, True, 0.0, "reference is empty"),
    (True, True, 1.0, "prediction and reference are empty"),
])
def test_empty_masks_give_nan_distances_and_say_so(pred_empty, ref_empty, dice_expected, note) -> None:
    full = np.zeros((10, 10, 10), np.uint8)
    full[2:6, 2:6, 2:6] = 1
    empty = np.zeros_like(full)
    m = case_metrics(empty if pred_empty else full, empty if ref_empty else full, (1.0, 1.0, 1.0))
    assert m.dice == dice_expected and m.iou == dice_expected
    assert math.isnan(m.hd95_mm) and math.isnan(m.asd_mm)
    assert note in m.note and "nan" in m.note


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(DataError, match=r"prediction shape \(4, 4, 4\) does not match reference shape \(4, 4, 5\)"):
        case_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), (1.0, 1.0, 1.0))
    with pytest.raises(DataError, match="spacing must be three positive"):
        case_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1.0, 0.0, 1.0))
    with pytest.raises(DataError, match="3-D mask"):
        case_metrics(np.zeros((4, 4)), np.zeros((4, 4)), (1.0, 1.0, 1.0))
    with pytest.raises(DataError, match=r"prediction must be a 3-D mask, got shape \(2, 4, 4, 1\)"):
        case_metrics(np.zeros((1, 2, 4, 4, 1)), np.zeros((4, 4, 1)), (1.0, 1.0, 1.0))
    batched = np.ones((1, 1, 4, 4, 1))                      # (batch, channel, x, y, z) is fine
    assert case_metrics(batched, batched[0, 0], (1.0, 1.0, 1.0)).dice == 1.0


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


def test_prediction_on_the_real_ct_has_its_shape_and_affine(shared_data: Path, tmp_path: Path) -> None:
    ct = shared_data / "totalsegmentator-example" / "ct.nii.gz"
    if not ct.is_file():
        pytest.skip(f"{ct} is not in this checkout's shared data")
    img = nib.load(ct)
    assert img.shape == (122, 101, 112) and nib.aff2axcodes(img.affine) == ("R", "A", "S")
    cfg = CourseConfig()  # the tutorial's 1.5 x 1.5 x 2 mm resampling, from a 3 mm CT
    mask, affine = predict_volume(ThresholdNet(level_for(60, cfg)), ct, cfg, "cpu")
    assert mask.shape == img.shape and np.array_equal(affine, img.affine)
    hu = np.asanyarray(img.dataobj)
    assert dice(mask, hu > 60) > 0.85
    out = save_mask(mask, affine, tmp_path / "ct_mask.nii.gz")
    assert nib.load(out).shape == img.shape and np.array_equal(nib.load(out).affine, img.affine)


def test_save_mask_refuses_a_name_that_is_not_nifti(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="must end in .nii.gz or .nii"):
        save_mask(np.zeros((2, 2, 2)), np.eye(4), tmp_path / "mask.png")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ files and reports
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny UNet saved the way training saves its best model (2 validation cases)."""
    cfg = tiny_cfg(val_count=2)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / BEST_MODEL_NAME
    save_checkpoint({"model_state_dict": build_unet(cfg).state_dict(), "config": cfg.to_dict(),
                     "epoch": 1, "best_metric": 0.0}, path)
    return path


def test_evaluate_cases_writes_masks_csv_and_summary(tiny_model: Path, synthetic_dir: Path,
                                                     tmp_path: Path) -> None:
    lines: list[str] = []
    report = evaluate_cases(tiny_model, synthetic_dir, tmp_path / "eval", device="cpu", log=lines.append)
    names = [c.name for c in report.cases]
    assert names == ["spleen_5", "spleen_6"]  # the validation split of the model's config (val_count=2)
    with open(report.csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == names
    for case, row in zip(report.cases, rows):
        saved = nib.load(case.prediction)
        label = nib.load(case.label)
        assert case.prediction.parent == tmp_path / "eval" / MASKS_DIR
        assert saved.shape == label.shape and np.array_equal(saved.affine, label.affine)
        again = case_metrics(np.asarray(saved.dataobj), np.asarray(label.dataobj),
                             nib.affines.voxel_sizes(saved.affine))
        assert float(row["dice"]) == pytest.approx(again.dice, abs=1e-5)
        assert float(row["ref_ml"]) == pytest.approx(again.ref_ml, rel=1e-5) and again.ref_ml > 0
    summary = json.loads(report.summary_json.read_text())
    dices = [c.metrics.dice for c in report.cases]
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(np.mean(dices))
    assert summary["metrics"]["dice"]["sd"] == pytest.approx(np.std(dices, ddof=1))
    assert summary["space"].startswith("original image space")
    with open(report.summary_csv, newline="") as fh:
        assert [r["metric"] for r in csv.DictReader(fh)][:2] == ["dice", "iou"]
    table = report.table()
    assert "mean ± sd (n=2)" in table and all(n in table for n in names)
    assert "<table" in report.to_html() and "HD95 mm" in report._repr_html_()
    assert report.best("dice").metrics.dice == max(dices)
    assert report.worst("dice").metrics.dice == min(dices)
    assert len(lines) == 3 and "spleen_5: Dice" in lines[1]


def test_evaluate_named_cases_and_bad_selections(tiny_model: Path, synthetic_dir: Path, tmp_path: Path) -> None:
    report = evaluate_cases(tiny_model, synthetic_dir, tmp_path / "e", cases=["spleen_1"], device="cpu",
                            keep_largest=True, save_predictions=False, log=lambda _: None)
    assert [c.name for c in report.cases] == ["spleen_1"] and report.cases[0].prediction is None
    assert report.config.keep_largest_component is True
    with pytest.raises(DataError, match="no case named 'spleen_99'"):
        evaluate_cases(tiny_model, synthetic_dir, tmp_path / "e", cases=["spleen_99"], device="cpu")
    with pytest.raises(ConfigError, match="cases must be 'val', 'all' or a list"):
        evaluate_cases(tiny_model, synthetic_dir, tmp_path / "e", cases="train", device="cpu")
    with pytest.raises(ConfigError, match="unknown metric"):
        report.best("accuracy")


def test_predict_file_from_nifti_and_from_a_dicom_folder(tiny_model: Path, tmp_path: Path) -> None:
    from spleen_helpers.dicom import write_ct_series
    from spleen_helpers.synthetic import PhantomSpec, generate_case

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


def test_find_or_train_model_prefers_the_run_then_trains_a_fallback(tiny_model: Path, synthetic_dir: Path,
                                                                    tmp_path: Path) -> None:
    assert find_or_train_model(tiny_model.parent, synthetic_dir, tmp_path / "fb", 1,
                               log=lambda _: None) == tiny_model
    assert not (tmp_path / "fb").exists()
    lines: list[str] = []
    with pytest.raises(ConfigError, match="must be >= 1"):
        find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 0)
    path = find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 1,
                               cfg=tiny_cfg(val_interval=2), log=lines.append)
    assert path == tmp_path / "fb" / BEST_MODEL_NAME and path.is_file()   # validated after epoch 1
    assert not (tmp_path / "no_run").exists() and "training a short 1-epoch run" in lines[0]
    # a second call reuses the fallback instead of training again
    assert find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 1,
                               log=lines.append) == path
    assert "using the short fallback run" in lines[-1]


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


def test_cli_evaluate_prints_table_and_paths(tiny_model: Path, synthetic_dir: Path, tmp_path: Path,
                                             capsys) -> None:
    out = tmp_path / "pred"
    assert cli.main(["evaluate", "--data-dir", str(synthetic_dir), "--model", str(tiny_model),
                     "--out", str(out), "--device", "cpu", "--keep-largest"]) == 0
    printed = capsys.readouterr().out
    assert "mean ± sd (n=2)" in printed and "largest component kept" in printed
    assert str(out / "metrics.csv") in printed and str(out / MASKS_DIR) in printed
    assert len(list((out / MASKS_DIR).glob("*.nii.gz"))) == 2


@pytest.mark.parametrize("make_args, message", [
    (lambda t, m: ["predict", "--model", str(t / "none.pth"), "--input", str(t / "ct.nii.gz"),
                   "--output", str(t / "o.nii.gz")], "checkpoint not found"),
    (lambda t, m: ["predict", "--model", str(m), "--input", str(t / "x.txt"),
                   "--output", str(t / "o.nii.gz"), "--device", "cpu"], "neither a NIfTI file"),
    (lambda t, m: ["evaluate", "--data-dir", str(t / "nodata"), "--model", str(m),
                   "--out", str(t / "o"), "--device", "cpu"], "data folder does not exist"),
    (lambda t, m: ["evaluate", "--data-dir", str(t), "--model", str(t / "x.txt"),
                   "--out", str(t / "o")], "x.txt: is "),
    (lambda t, m: ["evaluate", "--data-dir", str(t), "--model", str(t / "evil.pth"),
                   "--out", str(t / "o")], "evil.pth: refused: it holds pickled Python objects"),
])
def test_cli_bad_input_is_one_line_and_exit_2(make_args, message, tiny_model: Path, tmp_path: Path,
                                              capsys) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"model_state_dict": Path("x")}, fh)
    assert cli.main(make_args(tmp_path, tiny_model)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


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
