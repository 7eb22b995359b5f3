"""Step-by-step preprocessing summaries, random patch sampling and their figures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from monai.transforms import Compose

from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.data.dataset import load_datalist
from spleen_helpers.ground.errors import ConfigError, DataError
from spleen_helpers.teaching.inspect_transforms import Patch, apply_step_by_step, centre_range, plot_check_transforms, plot_crop_foreground, plot_intensity_scaling, plot_patch_centres, plot_patches, plot_steps, sample_patches, select_case, spleen_centre_mm, summary_table
from spleen_helpers.engine.transforms import preprocessing_steps, train_transforms

CFG = CourseConfig.synthetic()


@pytest.fixture(scope="module")
def case(synthetic_dir: Path) -> dict[str, str]:
    return load_datalist(synthetic_dir)[0]


@pytest.fixture(scope="module")
def timed_summaries(case: dict[str, str]):
    """The step-by-step summaries and the wall time of the whole call, in seconds."""
    t0 = time.perf_counter()
    found = apply_step_by_step(case, preprocessing_steps(CFG))
    return found, time.perf_counter() - t0


@pytest.fixture(scope="module")
def summaries(timed_summaries):
    return timed_summaries[0]


@pytest.fixture(scope="module")
def preprocessed(case: dict[str, str]) -> dict:
    return Compose(preprocessing_steps(CFG))(dict(case))


def by_name(summaries, name: str):
    return next(s for s in summaries if s.name == name)


def test_select_case_by_index_and_out_of_range(synthetic_dir: Path) -> None:
    files = load_datalist(synthetic_dir)
    assert select_case(files, 1) == files[1] and select_case(files, -1) == files[-1]
    with pytest.raises(ConfigError, match=f"case index {len(files)} is out of range.*{len(files)} cases"):
        select_case(files, len(files))
    with pytest.raises(DataError, match="no cases"):
        select_case([], 0)


# --------------------------------------------------------------------------- step by step
def test_one_summary_per_step_in_order(timed_summaries) -> None:
    summaries, wall = timed_summaries
    assert [s.name for s in summaries] == ["LoadImaged", "EnsureChannelFirstd", "ScaleIntensityRanged",
                                           "CropForegroundd", "Orientationd", "Spacingd", "SpatialPadd"]
    assert [s.index for s in summaries] == list(range(7))
    # each step's own time in seconds: together no more than the call took (not cumulative, not ms)
    assert sum(s.seconds for s in summaries) <= wall


def test_geometry_follows_the_transforms(summaries) -> None:
    load, orient, spacing = by_name(summaries, "LoadImaged"), by_name(summaries, "Orientationd"), \
        by_name(summaries, "Spacingd")
    assert load.axcodes == "LPS"                      # the phantom is stored like DICOM
    assert load.spacing == (2.5, 2.5, 6.0)
    assert orient.axcodes == "RAS"
    assert spacing.spacing == CFG.pixdim
    assert summaries[-1].shape == spacing.shape       # padding is a no-op: already >= the patch


def test_intensity_range_before_and_after_scaling(summaries) -> None:
    load, scaled = by_name(summaries, "LoadImaged"), by_name(summaries, "ScaleIntensityRanged")
    assert load.value_min <= -1000 and load.value_max > CFG.a_max
    assert (scaled.value_min, scaled.value_max) == (0.0, 1.0)
    for s in summaries:
        assert s.hist_counts.sum() == np.prod(s.shape)
        assert len(s.hist_edges) == len(s.hist_counts) + 1


def test_crop_box_recorded_only_by_the_crop_and_matches_the_new_shape(summaries) -> None:
    crop = by_name(summaries, "CropForegroundd")
    assert [s.name for s in summaries if s.crop_box is not None] == ["CropForegroundd"]
    start, end = crop.crop_box
    assert tuple(e - s for s, e in zip(start, end)) == crop.shape
    before = summaries[crop.index - 1]
    assert np.prod(crop.shape) < np.prod(before.shape)   # air around the body was removed


def test_every_slice_passes_through_the_same_anatomical_point(summaries, case) -> None:
    import nibabel as nib

    lab = nib.load(case["label"])
    centre = spleen_centre_mm(np.asarray(lab.dataobj), lab.affine)
    for s in summaries:
        axis_z = s.slice_axis
        assert abs(s.affine[2, axis_z]) == max(abs(s.affine[2, :3]))  # slices are axial
        voxel = np.zeros(4)
        voxel[axis_z], voxel[3] = s.slice_index, 1.0
        z_mm = (s.affine @ voxel)[2]
        assert abs(z_mm - centre[2]) <= s.spacing[axis_z] / 2 + 1e-6, s.name
        assert s.label_slice is not None and s.label_slice.any(), f"{s.name}: no spleen in the slice"
        a, b = s.plane_axes
        assert s.image_slice.shape == (s.shape[a], s.shape[b])


def test_spleen_volume_is_preserved_by_every_step(summaries) -> None:
    volumes = [s.spleen_ml for s in summaries]
    assert volumes[0] > 10
    assert max(volumes) / min(volumes) < 1.05   # resampling changes the voxel count, not the organ


def test_explicit_world_point_and_one_line_description(case) -> None:
    steps = preprocessing_steps(CFG)[:2]
    low = apply_step_by_step(case, steps, world_point=(0.0, 0.0, -1000.0))
    assert low[0].slice_index == 0                     # clipped to the volume
    text = low[0].describe()
    assert "\n" not in text and "LoadImaged" in text and "LPS" in text and "mL" in text


def test_random_crop_step_is_refused_with_one_line(case) -> None:
    steps = list(train_transforms(CFG).transforms[:-1])   # ends with RandCropByPosNegLabeld
    with pytest.raises(ConfigError, match="RandCropByPosNegLabeld.*sample_patches") as info:
        apply_step_by_step(case, steps)
    assert "\n" not in str(info.value)


def test_bad_bins_and_missing_image_key(case) -> None:
    with pytest.raises(ConfigError, match="bins"):
        apply_step_by_step(case, preprocessing_steps(CFG), bins=0)
    with pytest.raises(DataError, match="'scan'"):
        apply_step_by_step(case, preprocessing_steps(CFG)[:1], image_key="scan")


def test_summary_table_has_a_row_per_step(summaries) -> None:
    lines = summary_table(summaries).splitlines()
    assert len(lines) == len(summaries) + 1
    assert lines[0].split()[:2] == ["#", "transform"]
    assert "RAS" in lines[-1] and "x".join(f"{p:g}" for p in CFG.pixdim) in lines[-1]


# --------------------------------------------------------------------------- figures
@pytest.mark.slow
def test_plot_steps_draws_a_slice_and_histogram_per_step(summaries) -> None:
    fig = plot_steps(summaries)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * len(summaries)
    assert fig.axes[0].images and fig.axes[1].patches
    assert fig._repr_png_()[:4] == b"\x89PNG"            # Jupyter shows it without pyplot
    with pytest.raises(ConfigError):
        plot_steps([])


def test_plot_intensity_scaling_shades_the_hu_window(summaries) -> None:
    fig = plot_intensity_scaling(by_name(summaries, "EnsureChannelFirstd"),
                                 by_name(summaries, "ScaleIntensityRanged"), CFG)
    hist_before = fig.axes[2]
    spans = [p for p in hist_before.patches if p.get_label().startswith("window")]
    assert len(spans) == 1
    box = spans[0].get_bbox()   # data coordinates (x: HU)
    assert (box.x0, box.x1) == (CFG.a_min, CFG.a_max)


def test_plot_crop_foreground_draws_the_kept_box(summaries) -> None:
    crop = by_name(summaries, "CropForegroundd")
    fig = plot_crop_foreground(summaries[crop.index - 1], crop)
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1
    (start, end), (a, b) = crop.crop_box, crop.plane_axes
    assert boxes[0].get_x() == start[a] - 0.5 and boxes[0].get_width() == end[a] - start[a]
    assert boxes[0].get_y() == start[b] - 0.5 and boxes[0].get_height() == end[b] - start[b]
    with pytest.raises(ConfigError, match="foreground box"):
        plot_crop_foreground(summaries[0], summaries[1])


def test_plot_check_transforms_defaults_to_the_slice_with_most_spleen() -> None:
    img = np.zeros((8, 8, 5), dtype=np.float32)
    lab = np.zeros_like(img)
    lab[2:4, 2:4, 1] = 1
    lab[1:6, 1:6, 3] = 1
    fig = plot_check_transforms(img[None], lab[None])
    assert "slice 3" in fig.axes[0].get_title()
    assert np.array_equal(fig.axes[1].images[0].get_array(), lab[:, :, 3].T)
    with pytest.raises(ConfigError, match="slice_index 9"):
        plot_check_transforms(img, lab, slice_index=9)
    with pytest.raises(DataError, match="differ"):
        plot_check_transforms(img, lab[:4])


# --------------------------------------------------------------------------- patches
def test_sample_patches_cuts_patch_size_patches_at_the_reported_centres(preprocessed) -> None:
    patches = sample_patches(preprocessed, CFG, num_samples=6, seed=1)
    assert len(patches) == 6 and all(isinstance(p, Patch) for p in patches)
    image = preprocessed["image"][0].numpy()
    ranges = centre_range(image.shape, CFG.patch_size)
    for p in patches:
        assert p.image.shape == CFG.patch_size and p.label.shape == CFG.patch_size
        assert all(lo <= c <= hi for c, (lo, hi) in zip(p.centre, ranges))
        lo = [c - s // 2 for c, s in zip(p.centre, CFG.patch_size)]
        window = image[tuple(slice(l, l + s) for l, s in zip(lo, CFG.patch_size))]
        assert np.array_equal(window, p.image)            # the centre is where it was cut
        assert p.has_spleen == bool(p.label.any())
    assert any(p.has_spleen for p in patches)             # pos:neg = 1:1 over 6 draws


def test_sample_patches_same_seed_same_patches(preprocessed) -> None:
    a = [p.centre for p in sample_patches(preprocessed, CFG, 6, seed=3)]
    b = [p.centre for p in sample_patches(preprocessed, CFG, 6, seed=3)]
    c = [p.centre for p in sample_patches(preprocessed, CFG, 6, seed=4)]
    assert a == b and a != c
    with pytest.raises(ConfigError):
        sample_patches(preprocessed, CFG, num_samples=0)


def test_centre_range_for_a_volume_as_small_as_the_patch() -> None:
    assert centre_range((32, 40, 31), (32, 32, 32)) == [(16, 16), (16, 24), (16, 16)]


def test_plot_patch_centres_marks_every_centre(preprocessed) -> None:
    patches = sample_patches(preprocessed, CFG, 4, seed=0)
    fig = plot_patch_centres(preprocessed, patches)
    axial, coronal = fig.axes[:2]
    marked = sorted((line.get_xdata()[0], line.get_ydata()[0]) for line in axial.lines)
    assert marked == sorted((p.centre[0], p.centre[1]) for p in patches)
    marked = sorted((line.get_xdata()[0], line.get_ydata()[0]) for line in coronal.lines)
    assert marked == sorted((p.centre[0], p.centre[2]) for p in patches)
    fig = plot_patches(patches, columns=3)
    assert sum(ax.get_visible() for ax in fig.axes) == 4
