"""The UNet, its loss/metric, device selection and sliding-window inference."""

from __future__ import annotations

import pytest
import torch

from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.errors import ConfigError
from spleen_helpers.engine.model import build_dice_metric, build_loss, build_optimizer, build_unet, count_parameters, infer_logits, resolve_device

TUTORIAL_PARAMETERS = 4_808_917   # MONAI spleen tutorial's UNet(16, 32, 64, 128, 256; 2 res units)
SMALL = CourseConfig.synthetic(channels=(4, 8, 16), strides=(2, 2), patch_size=(16, 16, 16),
                               roi_size=(16, 16, 16))


def test_tutorial_unet_has_the_tutorials_parameter_count() -> None:
    net = build_unet(CourseConfig())
    assert count_parameters(net) == TUTORIAL_PARAMETERS
    # the phantom's UNet is the tutorial's with one residual unit per block instead of two
    phantom = CourseConfig.synthetic()
    assert count_parameters(build_unet(phantom.replace(num_res_units=2))) == TUTORIAL_PARAMETERS
    assert count_parameters(build_unet(phantom)) < TUTORIAL_PARAMETERS


def test_count_parameters_skips_frozen_weights() -> None:
    net = build_unet(SMALL)
    total = count_parameters(net)
    first = next(net.parameters())
    first.requires_grad_(False)
    assert count_parameters(net) == total - first.numel()


def test_output_has_two_class_channels_and_the_input_size() -> None:
    net = build_unet(CourseConfig.synthetic()).eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 1, 32, 32, 32))
    assert tuple(out.shape) == (2, 2, 32, 32, 32)


def test_instance_norm_and_unknown_norm() -> None:
    net = build_unet(SMALL.replace(norm="instance"))
    assert any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    with pytest.raises(ConfigError, match="norm must be one of"):
        build_unet(SMALL.replace(norm="group"))


def test_loss_and_metric_score_a_perfect_and_a_wrong_prediction() -> None:
    label = torch.zeros(1, 1, 8, 8, 8)
    label[..., 2:6, 2:6, 2:6] = 1
    perfect = torch.cat([(1 - label) * 20 - 10, label * 20 - 10], dim=1)   # logits
    loss = build_loss()
    assert float(loss(perfect, label)) < 0.01
    assert float(loss(-perfect, label)) > 0.9
    metric = build_dice_metric()
    onehot = torch.cat([1 - label, label], dim=1)
    metric(y_pred=onehot, y=onehot)
    metric(y_pred=torch.cat([label, 1 - label], dim=1), y=onehot)
    assert float(metric.aggregate()) == pytest.approx(0.5)   # mean of 1 and 0, spleen channel only


def onehot_cube(lo: int, hi: int, shift: int = 0) -> torch.Tensor:
    """(1, 2, 16, 16, 16) one-hot of the cube [lo, hi)^3 moved by ``shift`` voxels along x."""
    fg = torch.zeros(1, 1, 16, 16, 16)
    fg[..., lo + shift:hi + shift, lo:hi, lo:hi] = 1
    return torch.cat([1 - fg, fg], dim=1)


def test_dice_metric_scores_the_spleen_channel_only() -> None:
    """Two 8-voxel cubes overlapping by 6/8: spleen Dice 0.75 exactly. The background channel
    (Dice 0.964 here) must not enter: with it the mean would be 0.857."""
    metric = build_dice_metric()
    metric(y_pred=onehot_cube(4, 12, shift=2), y=onehot_cube(4, 12))
    assert float(metric.aggregate()) == pytest.approx(0.75, abs=1e-6)
    metric.reset()
    empty = onehot_cube(0, 0)                                   # nothing predicted as spleen
    metric(y_pred=empty, y=onehot_cube(4, 12))
    assert float(metric.aggregate()) == 0.0


def test_dicece_loss_is_dice_plus_cross_entropy() -> None:
    """``loss="dicece"`` (the synthetic profile's, MONAI's bundle) adds the voxel-wise
    cross-entropy to the soft Dice loss, both on the same logits and integer labels."""
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, 8)
    label = (torch.rand(2, 1, 8, 8, 8) > 0.6).float()
    dice = build_loss(CourseConfig.synthetic(loss="dice"))
    dicece = build_loss(CourseConfig.synthetic(loss="dicece"))
    cross_entropy = torch.nn.functional.cross_entropy(logits, label[:, 0].long())
    assert float(dicece(logits, label)) == pytest.approx(float(dice(logits, label) + cross_entropy), rel=1e-5)
    assert float(cross_entropy) > 0.5                          # the two losses really differ
    assert build_loss().__class__ is dice.__class__            # no configuration: the tutorial's Dice loss


def test_optimizer_uses_the_configured_learning_rate() -> None:
    opt = build_optimizer(build_unet(SMALL), SMALL.replace(learning_rate=3e-4))
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["lr"] == 3e-4


# --------------------------------------------------------------------------- devices
def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available on this machine")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="CUDA is not available") as info:
        resolve_device(name)
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_beyond_the_devices_is_a_config_error() -> None:
    assert resolve_device("cuda").type == "cuda"
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("name", ["gpu", "mps", ""])
def test_unknown_device_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device(name)


# --------------------------------------------------------------------------- inference
def test_infer_logits_on_an_odd_sized_volume() -> None:
    torch.manual_seed(0)
    net = build_unet(SMALL).eval()
    image = torch.rand(1, 1, 37, 29, 21)
    with torch.no_grad():
        logits = infer_logits(net, image, SMALL)
    assert tuple(logits.shape) == (1, 2, 37, 29, 21)
    assert torch.isfinite(logits).all()


def test_infer_logits_is_the_network_output_when_the_volume_fits_one_window() -> None:
    torch.manual_seed(0)
    net = build_unet(SMALL).eval()
    image = torch.rand(2, 1, *SMALL.roi_size)
    with torch.no_grad():
        direct = net(image)
        windowed = infer_logits(net, image, SMALL, torch.device("cpu"))
    torch.testing.assert_close(windowed, direct)
