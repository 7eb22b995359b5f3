"""The notebooks' equality proofs: they pass on equal code and fail, naming the difference, on any change."""

from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandCropByPosNegLabeld, ScaleIntensityRanged, Spacingd

from spleen_helpers.teaching.proofs import assert_same_data, assert_same_pipeline, assert_same_weights, describe_transform
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.engine.transforms import infer_transforms, train_transforms, val_transforms

CFG = CourseConfig.synthetic()


@pytest.mark.parametrize("build", [train_transforms, val_transforms, infer_transforms])
def test_a_pipeline_equals_itself_built_again(build) -> None:
    assert_same_pipeline(build(CFG), build(CFG))


@pytest.mark.parametrize("change, words", [
    ({"a_min": -100.0}, "step 2 (ScaleIntensityRanged): .scaler.a_min is -57.0 here but -100.0"),
    ({"pixdim": (3.0, 2.5, 6.0)}, "step 5 (Spacingd): .spacing_transform.pixdim.array[0] is 2.5 here but 3.0"),
    ({"num_samples": 3}, "RandCropByPosNegLabeld"),
    ({"pos": 2.0}, "pos_ratio"),
    ({"augment": True}, "the steps differ"),
])
def test_any_changed_setting_is_named(change: dict, words: str) -> None:
    with pytest.raises(AssertionError) as err:
        assert_same_pipeline(train_transforms(CFG), train_transforms(CFG.replace(**change)))
    assert words in str(err.value)


def test_a_changed_mode_or_key_is_caught() -> None:
    keys = ["image", "label"]
    a = Compose([Spacingd(keys=keys, pixdim=(4, 4, 4), mode=("bilinear", "nearest"))])
    b = Compose([Spacingd(keys=keys, pixdim=(4, 4, 4), mode=("nearest", "nearest"))])
    with pytest.raises(AssertionError, match="mode"):
        assert_same_pipeline(a, b)
    c = Compose([ScaleIntensityRanged(keys=["image"], a_min=0, a_max=1, b_min=0, b_max=1)])
    d = Compose([ScaleIntensityRanged(keys=["label"], a_min=0, a_max=1, b_min=0, b_max=1)])
    with pytest.raises(AssertionError, match="keys"):
        assert_same_pipeline(c, d)


def test_random_state_is_not_a_setting() -> None:
    a = RandCropByPosNegLabeld(keys=["image"], label_key="label", spatial_size=(4, 4, 4))
    b = RandCropByPosNegLabeld(keys=["image"], label_key="label", spatial_size=(4, 4, 4))
    a.set_random_state(seed=1)
    b.set_random_state(seed=2)
    assert describe_transform(a) == describe_transform(b)  # the outputs are compared for that


def test_data_equality_is_bit_for_bit_with_nan_equal_to_nan() -> None:
    x = {"image": torch.arange(6.0).reshape(1, 6), "meta": {"slope": math.nan, "name": "a"}}
    assert_same_data(x, {"image": torch.arange(6.0).reshape(1, 6), "meta": {"slope": math.nan, "name": "a"}})
    with pytest.raises(AssertionError, match=r"\['image'\]: the values differ"):
        assert_same_data(x, {"image": torch.arange(6.0).reshape(1, 6) + 1e-7, "meta": x["meta"]})
    with pytest.raises(AssertionError, match="float64"):
        assert_same_data(x, {"image": torch.arange(6.0, dtype=torch.float64).reshape(1, 6), "meta": x["meta"]})
    with pytest.raises(AssertionError, match="keys"):
        assert_same_data(x, {"image": x["image"]})
    with pytest.raises(AssertionError, match=r"\[1\]"):
        assert_same_data([x, x], [x, {"image": x["image"] * 2, "meta": x["meta"]}])


def test_a_different_affine_is_a_difference() -> None:
    a = MetaTensor(torch.zeros(1, 2, 2, 2), affine=torch.eye(4))
    shifted = torch.eye(4)
    shifted[0, 3] = 1.0
    with pytest.raises(AssertionError, match="affine"):
        assert_same_data({"image": a}, {"image": MetaTensor(torch.zeros(1, 2, 2, 2), affine=shifted)})


def test_weights_are_compared_layer_by_layer() -> None:
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    b = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    with pytest.raises(AssertionError, match="0.weight: the weights differ"):
        assert_same_weights(a, b)
    b.load_state_dict(a.state_dict())
    assert_same_weights(a, b.state_dict())
    b[1].running_mean += 1  # buffers count too: a resumed run must restore them
    with pytest.raises(AssertionError, match="1.running_mean"):
        assert_same_weights(a, b)
