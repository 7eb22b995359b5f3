"""check_exercise: one line of feedback per try, True only for a right answer, never an exception.

Every notebook exercise has a check; the solutions (run by nbmake) prove each check accepts a
right answer, and these tests show each check rejecting a plausible wrong answer with its hint,
an untouched try cell reading "not answered yet", and unreadable answers reported, not raised.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from spleen_helpers import check_exercise
from spleen_helpers.teaching.exercises import EXERCISES

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LPS_AFFINE = np.diag([-0.8, -0.8, 2.5, 1.0])
SHEARED = np.array([[0, 0.8, 0, 0], [0.8, 0, 0, 0], [0, 0.1, 2.5, 0], [0, 0, 0, 1.0]])   # rows and columns differ


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    import nibabel as nib

    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), LPS_AFFINE), path)
    return path


def mask_with_largest_slice(z: int) -> np.ndarray:
    mask = np.zeros((6, 6, 5), np.uint8)
    mask[1:3, 1:3, :] = 1
    mask[0:5, 0:5, z] = 1
    return mask


def volume() -> np.ndarray:
    return np.arange(24, dtype=float).reshape(2, 3, 4) - 1000


#: key -> (right answer, given, wrong answer, a word of its hint)
CASES = {
    "01.1": (volume(), {"volume_hu": volume()}, volume().T, "transpose"),
    "01.2": ([0.0, 2.5, 5.0], {"positions": [0.0, 2.5, 5.0]}, [5.0, 0.0, 2.5], "position"),
    "01.3": ((40, 35), {"num_slices": 40}, (40, 40), "short last chunk"),
    "01.4": (np.linalg.norm(SHEARED[:3, :3], axis=0), {"affine": SHEARED}, np.linalg.norm(SHEARED[:3, :3], axis=1),
             "rows"),
    "02.2": ({"before Spacingd": 100, "nearest": 90, "bilinear": 5000}, {},
             {"before Spacingd": 100, "nearest": 5000, "bilinear": 90}, "nearest copies"),
    "02.3": ((0.3, 0.5), {}, (30.0, 50.0), "not percentages"),
    "02.4": ({1.0: 0.2, 3.0: 0.4}, {}, {1.0: 0.4, 3.0: 0.2}, "pos=3"),
    "03.1": ({"dice": 0.6, "dicece": 0.7}, {"untrained": 0.1}, {"dice": 0.15, "dicece": 0.7}, "untrained"),
    "03.2": (([0.9, 0.8, 0.7], [0.9, 0.8, 0.7]), {}, ([0.9, 0.8], [0.9, 0.8, 0.7]), "epoch 3"),
    "03.4": (13856, {}, 13824, "bias"),
    "04.1": ({"dice": (0.95, 0.949), "max_hd": (5.0, 180.0)}, {}, {"dice": (0.95, 0.949), "max_hd": (5.0, 6.0)},
             "Hausdorff"),
    "04.2": ([1200, 1000, 800], {}, [800, 1000, 1200], "lower threshold"),
    "04.3": (120.5, {"report_ml": 120.5}, 120500.0, "1000 mm³"),
    "04.4": ([0.9 / 1.1, 0.8 / 1.2], {"iou": [0.9 / 1.1, 0.8 / 1.2]}, [0.45, 0.4], "Dice / (2 - Dice)"),
    "05.1": (0.3, {}, 3.3, "coverage"),
    "05.2": ("mirrored", {}, "as expected", "flipped"),
    "05.3": (ValueError("mask.nii.gz is not on this series' grid (z differs by 5 mm)"), {}, "written", "DicomError"),
    "05.4": (3, {"mask": mask_with_largest_slice(3), "affine": np.diag([0.8, 0.8, 2.5, 1.0])}, 1, "ImagePositionPatient"),
}


@pytest.mark.parametrize("key", sorted(CASES))
def test_a_check_accepts_the_right_answer_and_rejects_a_wrong_one_with_its_hint(key, capsys) -> None:
    right, given, wrong, hint = CASES[key]
    assert check_exercise(key, right, **given) is True
    assert capsys.readouterr().out == f"{key}: right\n"
    assert check_exercise(key, wrong, **given) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{key}: not yet right -- ") and hint in out and out.count("\n") == 1, out


def test_the_orientation_check_reads_the_stored_codes(image_file: Path, capsys) -> None:
    assert check_exercise("02.1", "LPS", image_file=image_file)
    assert not check_exercise("02.1", "RAS", image_file=image_file)
    assert "nothing turns the array" in capsys.readouterr().out


def test_the_weights_alone_check_wants_different_weights(capsys) -> None:
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        b.weight.add_(1.0)
    assert check_exercise("03.3", b, uninterrupted=a.state_dict())
    assert not check_exercise("03.3", a, uninterrupted=a.state_dict())
    assert "uninterrupted run's weights" in capsys.readouterr().out


def test_every_exercise_has_a_case_here() -> None:
    assert set(CASES) | {"02.1", "03.3"} == set(EXERCISES)


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_an_untouched_try_cell_reads_not_answered_yet(key, capsys) -> None:
    assert check_exercise(key, None) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{key}: not answered yet -- ") and out.count("\n") == 1


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_an_unreadable_answer_is_reported_never_raised(key, capsys) -> None:
    assert check_exercise(key, object()) is False
    assert capsys.readouterr().out.startswith(f"{key}: not yet right -- ")


def test_an_unknown_exercise_says_so(capsys) -> None:
    assert check_exercise("09.9", 1) is False
    assert "no such exercise" in capsys.readouterr().out


def test_every_notebook_exercise_has_a_check_and_every_check_an_exercise() -> None:
    used = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            used |= set(re.findall(r'check_exercise\("(\d\d\.\d)"', cell.source))
    assert used == set(EXERCISES)
