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
from scipy import ndimage

from spleen_helpers.tools import cli
from spleen_helpers.ground.errors import ConfigError, DataError
from spleen_helpers.engine.evaluate import MASKS_DIR, case_metrics, evaluate_cases
from tests.support import ThresholdNet, dice, level_for, skip_or_fail

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
    assert m.pred_ml == (0.0 if pred_empty else 64 / 1000) and m.ref_ml == (0.0 if ref_empty else 64 / 1000)


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


# ------------------------------------------------- metrics: known answers by hand
# MONAI's surface (``monai.metrics.utils.get_mask_edges`` without sub-voxels): the mask voxels
# that a binary erosion with the 6-neighbour cross removes, i.e. those with a face neighbour
# outside the mask (a voxel on the array's edge counts as surface). A directed surface distance
# is the Euclidean distance in mm (voxel index x spacing) from each surface voxel of one mask
# to the nearest surface voxel of the other. HD95 is the larger of the two directed 95th
# percentiles (``torch.quantile``: linear interpolation), ASD the mean of both directions'
# distances pooled together.
def test_offset_boxes_have_the_dice_iou_and_volumes_worked_out_by_hand() -> None:
    ref = np.zeros((10, 10, 10), np.uint8)
    ref[2:6, 2:7, 2:8] = 1                              # 4 x 5 x 6 = 120 voxels
    pred = np.zeros_like(ref)
    pred[3:9, 2:7, 4:7] = 1                             # 6 x 5 x 3 = 90 voxels
    # overlap: x 3..5 (3) x y 2..6 (5) x z 4..6 (3) = 45 voxels, union 120 + 90 - 45 = 165
    m = case_metrics(pred, ref, spacing=(0.8, 1.2, 2.5))
    assert m.dice == pytest.approx(2 * 45 / (120 + 90))   # 3/7
    assert m.iou == pytest.approx(45 / 165)               # 3/11, not the Dice
    # one voxel is 0.8 x 1.2 x 2.5 = 2.4 mm³; 1 mL = 1000 mm³
    assert (m.ref_voxels, m.pred_voxels) == (120, 90)
    assert m.ref_ml == pytest.approx(120 * 2.4 / 1000) and m.pred_ml == pytest.approx(90 * 2.4 / 1000)
    assert m.volume_error_ml == pytest.approx(-30 * 2.4 / 1000)


def test_concentric_boxes_have_the_surface_distances_worked_out_by_hand() -> None:
    # The prediction is one voxel c, the reference the 3 x 3 x 3 box around it, at spacing
    # (sx, sy, sz) = (0.5, 1, 2) mm. The box's surface is its 26 voxels around c (c itself has
    # all six face neighbours inside); the single voxel is its own surface.
    ref = np.zeros((7, 7, 7), np.uint8)
    ref[2:5, 2:5, 2:5] = 1
    pred = np.zeros_like(ref)
    pred[3, 3, 3] = 1
    sx, sy, sz = 0.5, 1.0, 2.0
    # c -> box: the nearest of the 26 is a face neighbour along x, sx = 0.5 mm.
    # box -> c: 2 face neighbours along each axis, 4 edge voxels in each plane, 8 corners.
    pred_to_ref = [sx]
    ref_to_pred = sorted([sx] * 2 + [sy] * 2 + [sz] * 2 + [math.hypot(sx, sy)] * 4 + [math.hypot(sx, sz)] * 4
                         + [math.hypot(sy, sz)] * 4 + [math.hypot(sx, sy, sz)] * 8)
    # the directed 95th percentile of the 26 sits at rank 0.95 x 25 = 23.75, among the 8 corners
    corner = math.hypot(sx, sy, sz)
    assert ref_to_pred[23] == ref_to_pred[24] == corner
    m = case_metrics(pred, ref, spacing=(sx, sy, sz))
    assert m.hd95_mm == pytest.approx(max(pred_to_ref[0], corner))     # sqrt(5.25) = 2.291 mm
    assert m.asd_mm == pytest.approx((sum(pred_to_ref) + sum(ref_to_pred)) / 27)
    # in voxels the corner would be sqrt(3) = 1.732 and the mean smaller still
    assert m.hd95_mm > math.sqrt(3) + 0.5


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy")  # inside MONAI
def test_one_far_outlier_sets_the_maximum_but_not_hd95() -> None:
    # The reference is a 6 x 6 plate one voxel thick (36 voxels, all of them surface); the
    # prediction is the same plate 2 slices higher along z plus one stray voxel 13 slices above
    # the reference, at spacing (0.8, 1, 2.5) mm.
    ref = np.zeros((10, 10, 18), np.uint8)
    ref[2:8, 2:8, 3] = 1
    pred = np.roll(ref, 2, axis=2)
    pred[2, 2, 16] = 1
    shift, outlier = 2 * 2.5, 13 * 2.5                  # 5 mm and 32.5 mm
    # pred -> ref: 36 distances of 5 mm and the outlier's 32.5 mm; the 95th percentile of the 37
    # sits at rank 0.95 x 36 = 34.2, between two 5 mm values. ref -> pred: 36 distances of 5 mm.
    m = case_metrics(pred, ref, spacing=(0.8, 1.0, 2.5))
    assert m.hd95_mm == pytest.approx(shift)            # the outlier is ignored ...
    assert m.asd_mm == pytest.approx((72 * shift + outlier) / 73)   # ... but moves the average
    from monai.metrics import compute_hausdorff_distance

    hd_max = compute_hausdorff_distance(torch.as_tensor(pred)[None, None], torch.as_tensor(ref)[None, None],
                                        include_background=True, spacing=(0.8, 1.0, 2.5)).item()
    assert hd_max == pytest.approx(outlier) and hd_max - m.hd95_mm == pytest.approx(27.5)


# ------------------------------------------ metrics: a peer implementation on random masks
CROSS = ndimage.generate_binary_structure(3, 1)   # the 6 face neighbours


def surface(mask: np.ndarray) -> np.ndarray:
    """MONAI's surface voxels: the mask less its erosion by the 6-neighbour cross."""
    return mask & ~ndimage.binary_erosion(mask, structure=CROSS, border_value=0)


def directed_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """mm from every surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    return ndimage.distance_transform_edt(~surface(b), sampling=spacing)[surface(a)]


def random_blobs(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """``(pred, ref, spacing)``: smooth random blobs that overlap in part, at random anisotropic spacing."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, 20, 22, 18))
    ref_field = ndimage.gaussian_filter(a, 2.0)
    pred_field = ndimage.gaussian_filter(0.8 * a + 0.6 * b, 2.0)     # correlated with the reference
    ref = ref_field > np.quantile(ref_field, 0.85)
    pred = pred_field > np.quantile(pred_field, rng.uniform(0.8, 0.9))
    spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, 3))
    return pred, ref, spacing  # type: ignore[return-value]


#: Seeds on which MONAI's HD95 and the pooled one (medpy's) differ, so the peer can tell them apart.
PEER_SEEDS = [0, 1, 2, 4, 5, 6]


@pytest.mark.parametrize("seed", PEER_SEEDS)
def test_metrics_equal_monais_definitions_written_with_scipy(seed: int) -> None:
    pred, ref, spacing = random_blobs(seed)
    m = case_metrics(pred, ref, spacing)
    inter, union = int((pred & ref).sum()), int((pred | ref).sum())
    assert m.dice == pytest.approx(2 * inter / (pred.sum() + ref.sum()), abs=1e-6)
    assert m.iou == pytest.approx(inter / union, abs=1e-6)
    assert m.pred_ml == pytest.approx(pred.sum() * np.prod(spacing) / 1000)
    d_pr, d_rp = directed_distances(pred, ref, spacing), directed_distances(ref, pred, spacing)
    monai_hd95 = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))   # larger directed percentile
    pooled_hd95 = np.percentile(np.concatenate([d_pr, d_rp]), 95)          # medpy's hd95
    assert m.hd95_mm == pytest.approx(monai_hd95, rel=1e-5)
    assert abs(m.hd95_mm - pooled_hd95) > 1e-3                             # a different definition
    assert m.hd95_mm < max(d_pr.max(), d_rp.max()) - 1e-3                  # and not the maximum
    assert m.asd_mm == pytest.approx(np.concatenate([d_pr, d_rp]).mean(), rel=1e-5)
    assert abs(m.asd_mm - (d_pr.mean() + d_rp.mean()) / 2) > 1e-4          # not the mean of means


def test_metrics_equal_medpy_where_the_definitions_coincide() -> None:
    """medpy (>= 0.5.2) computes Dice, IoU, the maximum Hausdorff distance and the pooled ASD the
    way MONAI does, from the same surfaces; its ``hd95`` pools both directions instead."""
    try:
        from medpy.metric import binary as medpy
    except ImportError:
        skip_or_fail("medpy is not installed (it is in the test extra: pip install -e '.[test]')")
    for seed in PEER_SEEDS:
        pred, ref, spacing = random_blobs(seed)
        m = case_metrics(pred, ref, spacing)
        assert m.dice == pytest.approx(medpy.dc(pred, ref), abs=1e-6), seed
        assert m.iou == pytest.approx(medpy.jc(pred, ref), abs=1e-6), seed
        assert m.asd_mm == pytest.approx(medpy.assd(pred, ref, spacing), rel=1e-5), seed
        d_pr, d_rp = directed_distances(pred, ref, spacing), directed_distances(ref, pred, spacing)
        # the scipy peer's surfaces and distances are medpy's
        assert medpy.hd(pred, ref, spacing) == pytest.approx(max(d_pr.max(), d_rp.max())), seed
        assert medpy.hd95(pred, ref, spacing) == pytest.approx(np.percentile(np.concatenate([d_pr, d_rp]), 95))
        assert medpy.asd(pred, ref, spacing) == pytest.approx(d_pr.mean()), seed


# ------------------------------------------------------------------ files and reports
def test_evaluate_cases_writes_masks_csv_and_summary(tiny_model: Path, synthetic_dir: Path,
                                                     tmp_path: Path, monkeypatch) -> None:
    import spleen_helpers.engine.evaluate as evaluate

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


@pytest.mark.slow
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
    from spleen_helpers.data.phantom import write_synthetic_dataset

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


