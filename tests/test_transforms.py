"""The MONAI pipelines on the synthetic phantom: geometry, intensities, patches, seeds."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import RandFlipd, RandRotate90d, RandShiftIntensityd

from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.data.dataset import load_datalist
from spleen_helpers.data.phantom import PhantomSpec, generate_case
from spleen_helpers.engine.transforms import infer_transforms, train_transforms, val_transforms

CFG = CourseConfig.synthetic()
RANDOM_AUGMENTS = {"RandFlipd", "RandRotate90d", "RandShiftIntensityd"}


def names(compose) -> list[str]:
    return [type(t).__name__ for t in compose.transforms]


def write_case(root: Path, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = {"image": root / "image.nii.gz", "label": root / "label.nii.gz"}
    nib.save(nib.Nifti1Image(image, affine), paths["image"])
    nib.save(nib.Nifti1Image(label, affine), paths["label"])
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def case(synthetic_dir: Path) -> dict[str, str]:
    return load_datalist(synthetic_dir)[0]


@pytest.fixture(scope="module")
def val_out(case: dict[str, str]) -> dict:
    return val_transforms(CFG)(dict(case))


@pytest.fixture(scope="module")
def small_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A phantom with a small field of view: 128 x 128 x 40 mm, smaller than any patch."""
    image, label, affine = generate_case(7, PhantomSpec(shape=(32, 32, 10), spacing=(4.0, 4.0, 4.0)))
    return write_case(tmp_path_factory.mktemp("small"), image, label, affine)


# --------------------------------------------------------------------------- pipeline layout
def test_pipeline_order_is_the_tutorials() -> None:
    assert names(val_transforms(CFG)) == ["LoadImaged", "EnsureChannelFirstd", "ScaleIntensityRanged",
                                          "CropForegroundd", "Orientationd", "Spacingd"]
    train = names(train_transforms(CFG))
    assert train[:6] == names(val_transforms(CFG))
    assert train[6:] == ["SpatialPadd", "RandCropByPosNegLabeld", "EnsureTyped"]


def test_bundle_order_resamples_before_the_window_and_does_not_crop(case) -> None:
    """transform_order="bundle" is the inference pipeline of MONAI's spleen bundle: the window
    comes after resampling, so clipping happens on interpolated HU, and nothing is cropped."""
    bundle = CFG.replace(transform_order="bundle")
    assert names(infer_transforms(bundle)) == ["LoadImaged", "EnsureChannelFirstd", "Orientationd",
                                               "Spacingd", "ScaleIntensityRanged"]
    tutorial = infer_transforms(CFG)({"image": case["image"]})["image"]
    ordered = infer_transforms(bundle)({"image": case["image"]})["image"]
    img = nib.load(case["image"])
    extent = np.array(img.shape) * np.array(img.header.get_zooms()[:3]) / np.array(CFG.pixdim)
    assert np.abs(np.array(ordered.shape[1:]) - extent).max() <= 1     # the whole field of view
    assert np.prod(tutorial.shape[1:]) < 0.9 * np.prod(ordered.shape[1:])  # the tutorial cropped air
    assert float(ordered.min()) == 0.0 and float(ordered.max()) == 1.0
    assert nib.aff2axcodes(ordered.affine.numpy()) == ("R", "A", "S")


def test_augment_adds_the_random_transforms() -> None:
    plain = set(names(train_transforms(CFG)))
    augmented = set(names(train_transforms(CFG.replace(augment=True))))
    assert not plain & RANDOM_AUGMENTS
    assert augmented - plain == RANDOM_AUGMENTS


# --------------------------------------------------------------------------- validation
def test_val_output_is_ras_at_the_configured_spacing(case, val_out) -> None:
    assert nib.aff2axcodes(nib.load(case["image"]).affine) == ("L", "P", "S")   # phantom on disk
    for key in ("image", "label"):
        affine = val_out[key].affine.numpy()
        assert nib.aff2axcodes(affine) == ("R", "A", "S"), key
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        np.testing.assert_allclose(spacing, CFG.pixdim)
        np.testing.assert_allclose(val_out[key].pixdim.numpy(), CFG.pixdim)
    assert val_out["image"].shape == val_out["label"].shape
    assert val_out["image"].shape[0] == 1                 # channel first


def test_val_intensities_are_scaled_to_unit_range(val_out) -> None:
    image = val_out["image"]
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert set(torch.unique(val_out["label"]).tolist()) == {0.0, 1.0}   # nearest: still a mask


def test_val_crop_removed_the_air_around_the_body(case, val_out) -> None:
    raw = nib.load(case["image"])
    hu = np.asarray(raw.dataobj)
    body = np.argwhere(hu > CFG.a_min)                     # what ScaleIntensityRanged maps above 0
    extent_mm = (body.max(axis=0) - body.min(axis=0) + 1) * np.asarray(raw.header.get_zooms())
    out_mm = np.asarray(val_out["image"].shape[1:]) * np.asarray(CFG.pixdim)
    full_mm = np.asarray(hu.shape) * np.asarray(raw.header.get_zooms())
    assert np.all(np.abs(out_mm - extent_mm) <= np.asarray(CFG.pixdim)), (out_mm, extent_mm)
    assert out_mm[0] < full_mm[0] and out_mm[1] < full_mm[1]      # air at the sides is gone
    image = val_out["image"][0].numpy()
    for axis in (0, 1):                                    # the box is tight: body on every face
        for face in (0, -1):
            assert np.take(image, face, axis=axis).max() > 0, (axis, face)


def test_val_keeps_the_spleen_volume(case, val_out) -> None:
    raw = nib.load(case["label"])
    raw_ml = (np.asarray(raw.dataobj) > 0).sum() * np.prod(raw.header.get_zooms()) / 1000
    out_ml = float((val_out["label"] > 0).sum()) * np.prod(CFG.pixdim) / 1000
    assert raw_ml > 10 and abs(out_ml - raw_ml) / raw_ml < 0.05


def test_infer_transforms_take_the_image_alone(case) -> None:
    out = infer_transforms(CFG)({"image": case["image"]})
    assert "label" not in out
    assert nib.aff2axcodes(out["image"].affine.numpy()) == ("R", "A", "S")


# --------------------------------------------------------------------------- training
def test_train_returns_num_samples_patches_of_patch_size(case) -> None:
    out = train_transforms(CFG)(dict(case))
    assert isinstance(out, list) and len(out) == CFG.num_samples
    for sample in out:
        assert tuple(sample["image"].shape) == (1, *CFG.patch_size)
        assert tuple(sample["label"].shape) == (1, *CFG.patch_size)
        assert type(sample["image"]) is torch.Tensor        # EnsureTyped drops the metadata
        assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0


def test_train_pads_a_volume_smaller_than_the_patch(small_case) -> None:
    cfg = CFG.replace(patch_size=(48, 48, 48), num_samples=3)
    pre = val_transforms(cfg)(dict(small_case))
    assert any(n < p for n, p in zip(pre["image"].shape[1:], cfg.patch_size))   # really smaller
    out = train_transforms(cfg)(dict(small_case))
    assert len(out) == 3
    assert all(tuple(s["image"].shape) == (1, 48, 48, 48) for s in out)


def test_real_data_settings_pad_a_small_volume_to_96_cubed(small_case) -> None:
    cfg = CourseConfig()                                   # the tutorial's settings for Task09
    assert cfg.patch_size == (96, 96, 96)
    out = train_transforms(cfg)(dict(small_case))
    assert len(out) == cfg.num_samples
    for sample in out:
        assert tuple(sample["image"].shape) == (1, 96, 96, 96)
        assert tuple(sample["label"].shape) == (1, 96, 96, 96)
        assert sample["label"].sum() > 0                   # the whole small volume is in every patch


def test_all_zero_label_does_not_crash_the_random_crop(tmp_path: Path) -> None:
    image, _, affine = generate_case(3)
    files = write_case(tmp_path, image, np.zeros(image.shape, dtype=np.uint8), affine)
    with pytest.warns(UserWarning, match="foreground"):    # MONAI says it fell back to background
        out = train_transforms(CFG)(files)
    assert len(out) == CFG.num_samples
    assert all(float(s["label"].sum()) == 0 for s in out)
    assert all(tuple(s["image"].shape) == (1, *CFG.patch_size) for s in out)


def test_augmented_pipeline_still_gives_valid_patches(case) -> None:
    tf = train_transforms(CFG.replace(augment=True))
    tf.set_random_state(seed=0)
    out = tf(dict(case))
    assert len(out) == CFG.num_samples
    assert all(tuple(s["image"].shape) == (1, *CFG.patch_size) for s in out)


def spleen_band(val_out: dict) -> tuple[float, float]:
    """The spleen's intensity after preprocessing: 5th to 95th percentile inside the label."""
    inside = val_out["image"][val_out["label"] > 0].numpy()
    return tuple(float(v) for v in np.percentile(inside, [5, 95]))


def test_augmentation_keeps_image_and_label_aligned(case, val_out) -> None:
    """Flips and 90-degree rotations, forced on, move image and label together.

    Inside the label of each augmented patch the image must still show the spleen's intensity
    (5th-95th percentile band of the un-augmented volume). Measured on the phantom: 0.90 of the
    label voxels are in the band without augmentation and 0.90 with it; with the label left
    unflipped (flips applied to the image only) the fraction drops to 0.09-0.32 per patch.
    """
    lo, hi = spleen_band(val_out)
    in_band = total = 0
    for seed in range(3):
        tf = train_transforms(CFG.replace(augment=True, num_samples=4))
        spatial = [t for t in tf.transforms if isinstance(t, (RandFlipd, RandRotate90d))]
        assert len(spatial) == 4
        for t in spatial:
            t.prob = 1.0                                      # every flip and a rotation, always
        for t in tf.transforms:
            if isinstance(t, RandShiftIntensityd):
                t.prob = 0.0                                  # intensities as preprocessed
        tf.set_random_state(seed=seed)
        for sample in tf(dict(case)):
            inside = sample["image"][sample["label"] > 0].numpy()
            in_band += int(((inside >= lo) & (inside <= hi)).sum())
            total += inside.size
    assert total > 5000                                       # patches centred on the spleen
    assert in_band / total > 0.85, f"{in_band / total:.3f} of the label voxels show spleen intensity"


def test_intensity_augmentation_shifts_the_image_and_leaves_the_label(case) -> None:
    """With the same seed the augmented pipeline crops the same patches as the plain one; the
    intensity shift (forced on, flips and rotations off) adds one offset to the image only."""
    tf = train_transforms(CFG.replace(augment=True))
    for t in tf.transforms:
        if isinstance(t, (RandFlipd, RandRotate90d, RandShiftIntensityd)):
            t.prob = 1.0 if isinstance(t, RandShiftIntensityd) else 0.0
    tf.set_random_state(seed=1)
    plain = train_transforms(CFG)
    plain.set_random_state(seed=1)
    for augmented, reference in zip(tf(dict(case)), plain(dict(case))):
        assert torch.equal(augmented["label"], reference["label"])
        offset = augmented["image"] - reference["image"]
        assert 0 < abs(float(offset.mean())) <= 0.1 + 1e-6       # offsets=0.10
        assert float(offset.max() - offset.min()) < 1e-5          # one offset for the whole patch


@pytest.mark.parametrize("augment", [False, True])
def test_same_seed_gives_the_same_patches(case, augment: bool) -> None:
    def draw(seed: int) -> list[torch.Tensor]:
        tf = train_transforms(CFG.replace(augment=augment, num_samples=3))
        tf.set_random_state(seed=seed)
        return [s["image"] for s in tf(dict(case))]

    a, b, c = draw(5), draw(5), draw(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


# ----------------------------------------------------------------- a header that lies
@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's phantom (6 cases, seed 0) with every NIfTI written as its LPS-as-RAS twin."""
    from spleen_helpers.data.phantom import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("twin"), num_cases=6, seed=0, lps_as_ras=True)


def test_turn_header_is_absent_unless_a_data_set_needs_it() -> None:
    assert "TurnHeaderd" not in names(train_transforms(CFG)) + names(val_transforms(CFG)) + names(infer_transforms(CFG))
    turned = CFG.replace(turned_cases=("spleen_1",))
    for pipeline in (train_transforms(turned), val_transforms(turned), infer_transforms(CFG, turned=True)):
        assert names(pipeline)[:3] == ["LoadImaged", "TurnHeaderd", "EnsureChannelFirstd"]


def test_a_corrected_twin_is_the_true_case_bit_for_bit(synthetic_dir: Path, twin_dir: Path) -> None:
    """Read with the correction, the twin's image, label and header equal the true case's exactly;
    only the listed cases are turned."""
    from spleen_helpers.data.anatomy import LPS_AS_RAS

    cfg = CFG.replace(turned_cases=("spleen_1", "spleen_2"))
    for true, twin in zip(load_datalist(synthetic_dir)[:3], load_datalist(twin_dir)[:3]):
        a, b = val_transforms(CFG)(true), val_transforms(cfg)(twin)
        if Path(twin["image"]).name == "spleen_3.nii.gz":   # not listed: read as stored, RAS as claimed
            assert b["image"].meta["original_affine"] == pytest.approx(LPS_AS_RAS @ a["image"].meta["original_affine"])
            assert not torch.equal(a["image"].affine, b["image"].affine)
            continue
        for key in ("image", "label"):
            assert torch.equal(a[key].as_tensor(), b[key].as_tensor()), key
            assert torch.equal(a[key].affine, b[key].affine), key
