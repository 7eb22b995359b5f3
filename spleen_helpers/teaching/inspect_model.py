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

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING
from dataclasses import dataclass

import torch
from monai.networks.blocks import Convolution, ResidualUnit

from ..ground.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["BlockShape", "block_output_shapes", "format_block_shapes", "plot_unet"]


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


def plot_unet(shapes: Sequence[BlockShape], input_size: Sequence[int]) -> "Figure":
    """Draw the network as a U from its own block shapes: one box per block, placed by resolution.

    A block's depth is how often its first axis was halved from ``input_size``; the label gives
    its channels and voxels. Arrows follow the forward pass; dashed lines are the skip
    connections (a contracting block to the first block back at its resolution).
    """
    import matplotlib.pyplot as plt

    levels = [round(math.log2(int(input_size[0]) / b.shape[1])) for b in shapes]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(shapes)), 1.3 * (max(levels) + 2)))
    colours = {"ResidualUnit": "#56B4E9", "Convolution (transposed)": "#E69F00", "Convolution": "#009E73"}
    for b, level in zip(shapes, levels):
        ax.add_patch(plt.Rectangle((b.order - 0.4, -level - 0.35), 0.8, 0.7, color=colours.get(b.kind, "#999999")))
        ax.text(b.order, -level, f"{b.shape[0]} ch\n{'x'.join(map(str, b.shape[1:]))}", ha="center",
                va="center", fontsize=7)
    for a, b in zip(range(len(shapes) - 1), range(1, len(shapes))):
        ax.annotate("", (b - 0.4, -levels[b]), (a + 0.4, -levels[a]), arrowprops={"arrowstyle": "->", "lw": 0.8})
    bottom = len(levels) - 1 - levels[::-1].index(max(levels))   # the last block at the coarsest level
    for i in range(bottom):
        j = next((k for k in range(bottom, len(shapes)) if levels[k] == levels[i]), None)
        if j is not None:
            ax.plot([i, j], [-levels[i] + 0.35, -levels[j] + 0.35], "k--", lw=0.8)
    for kind, colour in ((k, c) for k, c in colours.items() if k in {b.kind for b in shapes}):
        ax.add_patch(plt.Rectangle((0, 0), 0, 0, color=colour, label=kind))
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.set_xlim(-0.6, len(shapes) - 0.4)
    ax.set_ylim(-max(levels) - 0.6, 0.8)
    ax.set_yticks([-lv for lv in range(max(levels) + 1)], [f"1/{2 ** lv}" for lv in range(max(levels) + 1)])
    ax.set_ylabel("resolution")
    ax.set_xticks([])
    ax.set_title("The UNet, drawn from its own block shapes (dashed: skip connections)", fontsize=9)
    return fig
