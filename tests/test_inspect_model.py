"""Feature-map shapes of the UNet's blocks from a real forward pass."""

from __future__ import annotations

import pytest

from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.errors import ConfigError
from spleen_helpers.teaching.inspect_model import block_output_shapes, format_block_shapes
from spleen_helpers.engine.model import build_unet

CFG = CourseConfig.synthetic(patch_size=(32, 32, 32), roi_size=(32, 32, 32))   # a cube: halves on every axis


@pytest.fixture(scope="module")
def shapes():
    return block_output_shapes(build_unet(CFG), CFG.patch_size)


def test_contracting_path_halves_the_size_and_widens_the_channels(shapes) -> None:
    encoder = shapes[:len(CFG.channels)]
    assert all(b.kind == "ResidualUnit" for b in encoder)
    assert [b.shape[0] for b in encoder] == list(CFG.channels)
    sizes = [b.shape[1] for b in encoder]
    assert sizes == [16, 8, 4, 2, 2]            # strides 2, 2, 2, 2; the bottom keeps its size


def test_expanding_path_upsamples_back_to_the_input_size(shapes) -> None:
    decoder = shapes[len(CFG.channels):]
    ups = [b for b in decoder if b.kind == "Convolution (transposed)"]
    assert len(ups) == len(CFG.strides)
    assert [b.shape[1] for b in ups] == [4, 8, 16, 32]
    assert shapes[-1].shape == (2, *CFG.patch_size)     # two classes at full resolution
    assert [b.order for b in shapes] == list(range(len(shapes)))


def test_mode_is_restored_and_no_hooks_stay(shapes) -> None:
    net = build_unet(CFG)
    net.train()
    block_output_shapes(net, (16, 16, 16))
    assert net.training
    assert not any(m._forward_hooks for m in net.modules())
    net.eval()
    block_output_shapes(net, (16, 16, 16))
    assert not net.training


def test_without_residual_units_the_blocks_are_plain_convolutions() -> None:
    shapes = block_output_shapes(build_unet(CFG.replace(num_res_units=0)), (16, 16, 16))
    assert {b.kind for b in shapes} == {"Convolution", "Convolution (transposed)"}
    assert shapes[-1].shape == (2, 16, 16, 16)


def test_a_size_the_strides_do_not_divide_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\(30, 30, 30\) input does not pass") as info:
        block_output_shapes(build_unet(CFG), (30, 30, 30))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="positive"):
        block_output_shapes(build_unet(CFG), (0, 16, 16))


def test_format_has_one_line_per_block(shapes) -> None:
    lines = format_block_shapes(shapes).splitlines()
    assert len(lines) == len(shapes)
    assert "256 channels" in lines[len(CFG.channels) - 1]
    assert lines[-1].split()[-2] == "32x32x32"


def test_plot_unet_draws_one_box_per_block_at_its_resolution(shapes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spleen_helpers.teaching.inspect_model import plot_unet

    fig = plot_unet(shapes, CFG.patch_size)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if p.get_width() > 0]
    assert len(boxes) == len(shapes)
    assert min(p.get_y() for p in boxes) < -4          # the bottom: halved four times
    assert len([line for line in ax.lines if line.get_linestyle() == "--"]) == len(CFG.strides)   # one skip per level
    plt.close(fig)
