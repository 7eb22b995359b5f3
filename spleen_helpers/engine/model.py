"""The 3D UNet, its loss, optimiser and metric, and device selection.

Example:
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> net = build_unet(CourseConfig())
    >>> count_parameters(net)
    4808917
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceLoss
from monai.metrics import DiceMetric
from monai.networks.layers import Norm
from monai.networks.nets import UNet

from ..ground.errors import ConfigError
from ..ground.settings import CourseConfig

__all__ = [
    "build_unet", "build_loss", "build_optimizer", "build_scheduler", "build_dice_metric",
    "count_parameters", "resolve_device", "infer_logits"
]


_NORMS = {"batch": Norm.BATCH, "instance": Norm.INSTANCE}  # the names CourseConfig accepts


def build_unet(cfg: CourseConfig) -> UNet:
    """MONAI UNet as in the spleen tutorial: 3D, 1 input channel, 2 classes, residual units."""
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=cfg.channels,
                strides=cfg.strides, num_res_units=cfg.num_res_units, norm=_NORMS[cfg.norm])


def build_loss(cfg: CourseConfig | None = None) -> DiceLoss | DiceCELoss:
    """Soft Dice loss on softmax outputs against one-hot labels (the tutorial's), or with
    ``cfg.loss == "dicece"`` Dice plus cross-entropy (MONAI's spleen bundle), whose voxel-wise
    term converges in fewer steps.
    """
    if cfg is not None and cfg.loss == "dicece":
        return DiceCELoss(to_onehot_y=True, softmax=True)
    return DiceLoss(to_onehot_y=True, softmax=True)


def build_optimizer(model: torch.nn.Module, cfg: CourseConfig) -> torch.optim.Adam:
    """Adam with the configured learning rate (tutorial: 1e-4)."""
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: CourseConfig) -> torch.optim.lr_scheduler.ExponentialLR:
    """The learning rate times ``cfg.lr_decay`` after every epoch (``scheduler.step()`` once per epoch).

    With ``lr_decay = 1`` (the tutorial's) the rate stays constant. The factor per epoch does
    not depend on the number of epochs, so a run stopped and resumed follows the same rates.

    >>> import torch
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    >>> sched = build_scheduler(opt, CourseConfig(lr_decay=0.5)); sched.step()
    >>> opt.param_groups[0]["lr"]
    0.0005
    """
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)


def build_dice_metric() -> DiceMetric:
    """Mean Dice over cases, spleen channel only (background excluded)."""
    return DiceMetric(include_background=False, reduction="mean")


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; asking for CUDA without it is a ConfigError.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(None, f"device {name!r} requested but CUDA is not available on this "
                                    "machine; use --device cpu (or auto)")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(None, f"device {name!r} requested but only "
                                    f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif name != "cpu":
        raise ConfigError(None, f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return torch.device(name)


def infer_logits(model: torch.nn.Module, image: torch.Tensor, cfg: CourseConfig,
                 device: torch.device | None = None) -> torch.Tensor:
    """Sliding-window inference of a batch of whole volumes ``(B, 1, X, Y, Z)``; returns logits.

    MONAI's ``sliding_window_inference`` with the configured window (``roi_size``; a volume
    smaller than the window is padded to it, as in MONAI's tutorial), window batch size,
    overlap and blending; autocast on CUDA when ``cfg.amp``.
    """
    from monai.inferers import sliding_window_inference

    device = device or next(model.parameters()).device
    with torch.autocast(device_type=device.type, enabled=cfg.amp and device.type == "cuda"):
        return sliding_window_inference(image.to(device), cfg.roi_size, cfg.sw_batch_size, model,
                                        overlap=cfg.overlap, mode=cfg.blend_mode)
