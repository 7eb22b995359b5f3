"""Feedback for the notebooks' exercises: ``check_exercise("03.4", answer)``.

Every exercise has a "your turn" cell that ends with ``check_exercise(key, answer, **given)``:
``key`` is ``"NN.K"`` (notebook NN, exercise K), ``answer`` what the exercise asks for (its
type is whatever the exercise naturally produces: a number, an array, a dict), ``given`` the
notebook's own objects the check compares with. The check prints one line -- right, not
answered yet (``answer`` is ``None``), or wrong with a hint -- and returns ``True`` only for a
right answer. It never raises, so "Run all" works on an untouched notebook; the collapsed
solution ends with ``assert check_exercise(...)``.

Example:
    >>> check_exercise("03.4", None)
    03.4: not answered yet -- the number of parameters (weights and biases) of one 3x3x3 convolution from 16 to 32 channels
    False
    >>> check_exercise("03.4", 16 * 32 * 27)
    03.4: not yet right -- that counts the weights only: each of the 32 output channels also has a bias
    False
    >>> check_exercise("03.4", 16 * 32 * 27 + 32)
    03.4: right
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["Exercise", "EXERCISES", "check_exercise"]


@dataclass(frozen=True)
class Exercise:
    """One exercise's check: what the answer is, and a judge returning ``None`` (right) or a hint."""

    asks_for: str
    judge: Callable[..., str | None]


def _close(a: Any, b: Any, rtol: float = 1e-6) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=1e-9))


def _hu_by_hand(answer: Any, volume_hu: Any) -> str | None:
    answer, volume_hu = np.asarray(answer), np.asarray(volume_hu)
    if answer.shape != volume_hu.shape and answer.T.shape == volume_hu.shape:
        return "the axes are the other way round: transpose each slice's pixel_array to (columns, rows)"
    if _close(answer, volume_hu):
        return None
    return ("multiply each slice's pixel_array by float(RescaleSlope), add float(RescaleIntercept), transpose "
            "it to (columns, rows) and stack the slices on the last axis, in the order of series.files")


def _same_order(answer: Any, positions: Any) -> str | None:
    found = getattr(answer, "positions", answer)
    if _close(found, positions):
        return None
    return ("the slices should come back in the same order: find_series sorts by each slice's position "
            "(ImagePositionPatient), never by file name -- pass it the shuffled folder")


def _chunks(answer: Any, num_slices: int) -> str | None:
    kept, dropped = answer
    if kept != num_slices:
        return f"without drop_remainder every one of the {num_slices} slices is kept, the short last chunk too"
    if dropped != num_slices - num_slices % 7:
        return f"drop_remainder=True leaves out the short last chunk ({num_slices % 7} slices), nothing more"
    return None


def _spacing(answer: Any, affine: Any) -> str | None:
    m = np.asarray(affine, dtype=float)[:3, :3]
    if _close(answer, np.linalg.norm(m, axis=0)):
        return None
    if _close(answer, np.linalg.norm(m, axis=1)):
        return "those are the lengths of the rows: a voxel axis is a column (np.linalg.norm(..., axis=0))"
    return "take the length of each of the first three columns of affine[:3, :3]"


def _codes(answer: Any, image_file: Any) -> str | None:
    import nibabel as nib

    stored = "".join(nib.aff2axcodes(nib.load(str(image_file)).affine))
    if "".join(answer) == stored:
        return None
    return "without Orientationd nothing turns the array: the codes stay the file's own (nib.aff2axcodes of its affine)"


def _distinct(answer: dict[str, int]) -> str | None:
    if answer["nearest"] <= answer["before Spacingd"] < answer["bilinear"]:
        return None
    return ("nearest copies existing voxel values (never more distinct values than before Spacingd); "
            "bilinear blends neighbours into new ones -- count np.unique of each image")


def _clipped(answer: Any) -> str | None:
    tutorial, narrow = (float(x) for x in answer)
    if not (0 <= tutorial <= 1 and 0 <= narrow <= 1):
        return "give shares between 0 and 1 (the mean of a boolean array), not percentages"
    if narrow <= tutorial:
        return "a narrower window flattens more tissue to 0 or 1: is the pair (tutorial, narrow) the right way round?"
    return None


def _spleen_share(answer: dict[float, float]) -> str | None:
    if not all(0 <= answer[p] <= 1 for p in (1.0, 3.0)):
        return "give the mean spleen fraction per patch, between 0 and 1"
    if answer[3.0] <= answer[1.0]:
        return "with pos=3 three of four patch centres lie on the spleen: did you pass cfg.replace(pos=p, neg=1.0)?"
    return None


def _losses(answer: dict[str, float], untrained: float) -> str | None:
    if set(answer) != {"dice", "dicece"}:
        return "give a dict {'dice': best Dice, 'dicece': best Dice}, one short run per loss"
    if not all(untrained + 0.1 < d <= 1 for d in answer.values()):
        return (f"both runs should beat the untrained network's Dice ({untrained:.3f}) clearly: "
                "use each TrainResult's best_metric after 8 epochs")
    return None


def _resumed(answer: Any) -> str | None:
    a, b = (list(getattr(getattr(r, "history", r), "train_loss", r)) for r in answer)
    if len(a) == len(b) == 3 and all(abs(x - y) <= 1e-3 * max(1.0, abs(y)) for x, y in zip(a, b)):
        return None
    return ("resume both runs to epoch 3 (max_epochs=3, resume=True) and compare their history.train_loss: "
            "a resumed run repeats exactly what the uninterrupted one did")


def _weights_alone(answer: Any, uninterrupted: Any) -> str | None:
    from .proofs import assert_same_weights

    try:
        assert_same_weights(answer, uninterrupted)
    except AssertionError:
        return None
    return ("these are the uninterrupted run's weights: load only model_state_dict into a new network, "
            "give it a fresh Adam, and train one epoch with your own loop")


def _conv_parameters(answer: int) -> str | None:
    if answer == 16 * 32 * 27 + 32:
        return None
    if answer == 16 * 32 * 27:
        return "that counts the weights only: each of the 32 output channels also has a bias"
    return "a 3x3x3 kernel has 27 weights per input-output channel pair, plus one bias per output channel"


def _stray_blob(answer: dict[str, Any]) -> str | None:
    (dice_before, dice_after), (hd_before, hd_after) = answer["dice"], answer["max_hd"]
    if hd_after <= hd_before + 10:
        return "the blob sits far from the spleen: the maximum Hausdorff distance should jump (compare it in mm)"
    if not dice_before - 0.02 < dice_after <= dice_before:
        return "27 voxels against a whole spleen: Dice should fall, but only a little"
    return None


def _thresholds(answer: Any) -> str | None:
    volumes = [float(v) for v in answer]
    if len(volumes) != 3:
        return "give three volumes, at thresholds 0.3, 0.5 and 0.7 in that order"
    if not volumes[0] >= volumes[1] >= volumes[2]:
        return "a lower threshold can only add voxels: the volumes should shrink from 0.3 to 0.7"
    return None


def _volume_ml(answer: float, report_ml: float) -> str | None:
    if abs(answer - report_ml) <= 1e-6 * max(1.0, abs(report_ml)):
        return None
    if abs(answer / 1000.0 - report_ml) <= 1e-6 * max(1.0, abs(report_ml)):
        return "that is in mm³: 1 mL = 1000 mm³"
    return "count the mask's voxels and multiply by sx * sy * sz mm³ of the original image (header.get_zooms())"


def _iou(answer: Any, iou: Any) -> str | None:
    if _close(answer, iou, rtol=1e-4):
        return None
    return "IoU = Dice / (2 - Dice), one value per validation case in the report's order"


def _partial_organ(answer: float) -> str | None:
    if 0 < answer < 1:
        return None
    return "the share is the series' coverage in mm divided by the spleen's length in mm: below 1 here"


def _flipped_side(answer: Any) -> str | None:
    verdict = getattr(answer, "verdict", answer)
    if verdict == "mirrored":
        return None
    return "give spleen_side(...).verdict of the *flipped* mask: geometry passes, but anatomy should object"


def _wrong_grid(answer: Any) -> str | None:
    if "is not on this series' grid" in str(answer):
        return None
    return "catch what write_dicom_seg raises for the shifted affine (except DicomError as err: answer = err)"


def _which_slice(answer: int, mask: Any, affine: Any) -> str | None:
    import nibabel as nib

    z_axis = [c in "SI" for c in nib.aff2axcodes(np.asarray(affine))].index(True)
    areas = np.asarray(mask).sum(axis=tuple(a for a in range(3) if a != z_axis))
    if 0 <= int(answer) < len(areas) and areas[int(answer)] == areas.max():
        return None
    return ("that NIfTI slice is not the largest cross-section: map the DICOM slice's ImagePositionPatient "
            "(LPS: negate x and y for RAS) through the inverse affine, do not count slices")


EXERCISES: dict[str, Exercise] = {
    "01.1": Exercise("the HU volume by hand, shaped like volume_hu", _hu_by_hand),
    "01.2": Exercise("the series find_series finds in the shuffled folder (or its positions)", _same_order),
    "01.3": Exercise("(slices kept without drop_remainder, slices kept with it) for chunks of 7", _chunks),
    "01.4": Exercise("the voxel size (three numbers, mm) from the affine's columns", _spacing),
    "02.1": Exercise("the orientation codes of the output's affine without Orientationd, e.g. 'RAS'", _codes),
    "02.2": Exercise("a dict of distinct intensities: {'before Spacingd': n, 'nearest': n, 'bilinear': n}", _distinct),
    "02.3": Exercise("(share clipped with the tutorial's window, share clipped with 50..150 HU)", _clipped),
    "02.4": Exercise("{1.0: mean spleen fraction with pos=1, 3.0: with pos=3}", _spleen_share),
    "03.1": Exercise("{'dice': best Dice, 'dicece': best Dice} after 8 epochs each", _losses),
    "03.2": Exercise("(run resumed from epoch 1, run resumed from epoch 2): TrainResults or their train losses", _resumed),
    "03.3": Exercise("the network resumed from its weights alone and trained one more epoch", _weights_alone),
    "03.4": Exercise("the number of parameters (weights and biases) of one 3x3x3 convolution from 16 to 32 channels",
                     _conv_parameters),
    "04.1": Exercise("{'dice': (before, after), 'max_hd': (before, after)} for the stray blob", _stray_blob),
    "04.2": Exercise("the predicted volumes at thresholds 0.3, 0.5 and 0.7", _thresholds),
    "04.3": Exercise("the best case's predicted volume in mL, by hand", _volume_ml),
    "04.4": Exercise("the IoU of every validation case, computed from its Dice", _iou),
    "05.1": Exercise("the largest share of the spleen's length a 40 mm series can hold (between 0 and 1)",
                     _partial_organ),
    "05.2": Exercise("the side verdict of the flipped mask (spleen_side(...).verdict)", _flipped_side),
    "05.3": Exercise("the error write_dicom_seg raises for the shifted mask", _wrong_grid),
    "05.4": Exercise("the NIfTI slice index of the largest spleen cross-section", _which_slice),
}


def check_exercise(key: str, answer: Any, **given: Any) -> bool:
    """Print one line about ``answer`` to exercise ``key`` ("NN.K"); ``True`` only when it is right.

    ``given`` are the notebook's objects the check compares with (the try cell passes them).
    Never raises: an answer the check cannot even read is reported as not right, with the reason.
    """
    exercise = EXERCISES.get(key)
    if exercise is None:
        print(f"{key}: no such exercise (known: {', '.join(EXERCISES)})")
        return False
    if answer is None or answer is Ellipsis:
        print(f"{key}: not answered yet -- {exercise.asks_for}")
        return False
    try:
        hint = exercise.judge(answer, **given)
    except Exception as err:  # noqa: BLE001 -- feedback, never a traceback, in a try cell
        hint = f"could not read this answer ({type(err).__name__}: {err}); expected {exercise.asks_for}"
    print(f"{key}: right" if hint is None else f"{key}: not yet right -- {hint}")
    return hint is None
