"""Evaluation: metrics on hand-made masks, reports of evaluated cases, CLI and refusals."""

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

from spleen_helpers.tools import cli
from spleen_helpers.errors import ConfigError, DataError
from spleen_helpers.evaluate import MASKS_DIR, case_metrics, evaluate_cases
from support import ThresholdNet, dice, level_for

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


@pytest.mark.parametrize("prediction, expected_dice", [
    ("complement", 0.0),            # everything but the spleen: background only
    ("everything", 2 * 125 / (125 + 1000)),
])
def test_predictions_off_the_spleen_score_exactly(prediction: str, expected_dice: float) -> None:
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:7, 2:7, 2:7] = 1                                      # 125 of 1000 voxels
    pred = {"complement": 1 - ref, "everything": np.ones_like(ref)}[prediction]
    m = case_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m.dice == pytest.approx(expected_dice) and m.pred_voxels == int(pred.sum())
    assert m.iou == pytest.approx(expected_dice / (2 - expected_dice))


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


# ------------------------------------------------------------------ files and reports
def test_evaluate_cases_writes_masks_csv_and_summary(tiny_model: Path, synthetic_dir: Path,
                                                     tmp_path: Path, monkeypatch) -> None:
    import spleen_helpers.evaluate as evaluate

    # The tiny model's configuration, with a stand-in network whose masks are far from empty
    # and far from perfect (everything brighter than 95 HU: spleen, kidneys, aorta, spine).
    _, cfg = evaluate.load_model_or_bundle(tiny_model)
    monkeypatch.setattr(evaluate, "load_model_or_bundle",
                        lambda path, cfg_, device: (ThresholdNet(level_for(95, cfg)), cfg))
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
        # The CSV against counts made here, not against the metric code that wrote it.
        pred, ref = np.asarray(saved.dataobj) > 0, np.asarray(label.dataobj) > 0
        voxel_ml = float(np.prod(nib.affines.voxel_sizes(label.affine))) / 1000
        expected = dice(pred, ref)
        assert 0.1 < expected < 0.95, expected                  # a Dice with room to be wrong
        assert float(row["dice"]) == pytest.approx(expected, abs=1e-5)
        assert float(row["iou"]) == pytest.approx((pred & ref).sum() / (pred | ref).sum(), abs=1e-5)
        assert float(row["ref_ml"]) == pytest.approx(ref.sum() * voxel_ml, rel=1e-5)
        assert float(row["pred_ml"]) == pytest.approx(pred.sum() * voxel_ml, rel=1e-5)
        assert int(row["pred_voxels"]) == pred.sum() and int(row["ref_voxels"]) == ref.sum()
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
    with pytest.raises(ConfigError, match="cases must be 'val', 'test', 'all' or a list"):
        evaluate_cases(tiny_model, synthetic_dir, tmp_path / "e", cases="train", device="cpu")
    test = evaluate_cases(tiny_model, synthetic_dir, tmp_path / "t", cases="test", device="cpu",
                          save_predictions=False, log=lambda _: None)
    assert [c.name for c in test.cases] == ["spleen_test_1", "spleen_test_2", "spleen_test_3", "spleen_test_4"]
    assert all("imagesTs" in str(c.image) and "labelsTs" in str(c.label) for c in test.cases)
    from spleen_helpers.synthetic import write_synthetic_dataset

    no_test = write_synthetic_dataset(tmp_path / "no_test", num_cases=3, num_test=0)
    with pytest.raises(DataError, match="has no labelled test cases"):
        evaluate_cases(tiny_model, no_test, tmp_path / "e", cases="test", device="cpu")
    with pytest.raises(ConfigError, match="unknown metric"):
        report.best("accuracy")


# -------------------------------------------------------------------------------- CLI
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


