"""Look inside the UNet: the feature-map shape after every block, from a real forward pass.

Notebook 03 uses :func:`block_output_shapes` to show the contracting path (channels double,
size halves), the bottom, and the expanding path (transposed convolutions double the size
back) of MONAI's UNet for the configured patch size.

Example:
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> from spleen_helpers.engine.model import build_unet
    >>> shapes = block_output_shapes(build_unet(CourseConfig.synthetic()), (32, 32, 32))
    >>> shapes[0].shape, shapes[-1].shape
    ((16, 16, 16, 16), (2, 32, 32, 32))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.blocks import Convolution, ResidualUnit

from ..ground.errors import ConfigError

__all__ = ["BlockShape", "block_output_shapes", "format_block_shapes"]


@dataclass(frozen=True)
class BlockShape:
    """One block of the network and the shape of its output for one input sample."""

    order: int                # position in the forward pass, from 0
    name: str                 # module path inside the network, e.g. "model.1.submodule.0"
    kind: str                 # "ResidualUnit", "Convolution" or "Convolution (transposed)"
    shape: tuple[int, ...]    # (channels, x, y, z)


def _kind(module: torch.nn.Module) -> str:
    if isinstance(module, Convolution) and getattr(module, "is_transposed", False):
        return "Convolution (transposed)"
    return type(module).__name__


def block_output_shapes(model: torch.nn.Module, spatial_size: Sequence[int],
                        in_channels: int = 1) -> list[BlockShape]:
    """Run one zero input of ``spatial_size`` through ``model``; list each block's output shape.

    Blocks are MONAI's ``ResidualUnit`` and ``Convolution`` modules that are not part of a
    larger such block, in the order the forward pass reaches them. The model's train/eval
    mode is restored afterwards.
    """
    size = tuple(int(s) for s in spatial_size)
    if not size or any(s < 1 for s in size):
        raise ConfigError(None, f"spatial_size must be positive integers, got {tuple(spatial_size)}")
    kinds = (ResidualUnit, Convolution)
    named = dict(model.named_modules())
    outer = [name for name, m in named.items() if isinstance(m, kinds)
             and not any(isinstance(named[p], kinds) for p in _parents(name) if p in named)]
    found: list[BlockShape] = []
    hooks = []
    for name in outer:
        def hook(module, inputs, output, name=name):  # noqa: ANN001 - torch hook signature
            found.append(BlockShape(len(found), name, _kind(module), tuple(output.shape[1:])))
        hooks.append(named[name].register_forward_hook(hook))
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *size, device=device))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(None, f"a {size} input does not pass through the network ({first})") from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def format_block_shapes(shapes: Sequence[BlockShape]) -> str:
    """One line per block: order, kind, channels and spatial size."""
    lines = []
    for b in shapes:
        channels, spatial = b.shape[0], "x".join(map(str, b.shape[1:]))
        lines.append(f"{b.order:>2}  {b.kind:<25} {channels:>4} channels  {spatial:>12} voxels")
    return "\n".join(lines)
