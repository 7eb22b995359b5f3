"""One configuration for the whole course, shared by notebooks, CLI and tests.

:class:`CourseConfig` holds every knob, with MONAI's spleen tutorial values as defaults;
:meth:`CourseConfig.synthetic` holds the phantom's small settings; :func:`config_for` picks
one from a data folder, so ``data_dir`` is the only change between the phantom and real data.

Example:
    >>> cfg = CourseConfig()
    >>> cfg.pixdim, cfg.patch_size, cfg.roi_size
    ((1.5, 1.5, 2.0), (96, 96, 96), (160, 160, 160))
    >>> CourseConfig.synthetic().replace(max_epochs=3).max_epochs
    3
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["SYNTHETIC_DATASET_NAME", "CHOICES", "CourseConfig", "is_synthetic_dataset", "config_for"]


SYNTHETIC_DATASET_NAME = "SyntheticSpleen"


Triple = tuple[float, float, float]


IntTriple = tuple[int, int, int]


def _setting(default: Any, help: str) -> Any:
    """A dataclass field with its one-line help (the CLI's ``--option`` text comes from it)."""
    return field(default=default, metadata={"help": help})


#: Allowed values of the settings that take one of a few names (validated here, offered as
#: ``choices`` by the CLI).
CHOICES: dict[str, tuple[str, ...]] = {
    "loss": ("dice", "dicece"),
    "norm": ("batch", "instance"),
    "loader": ("standard", "thread"),
    "blend_mode": ("constant", "gaussian"),
    "transform_order": ("tutorial", "bundle"),
}


@dataclass(frozen=True)
class CourseConfig:
    """Every setting of data split, transforms, model, training and inference.

    Defaults are MONAI's spleen tutorial values for the real Task09 data; each field's
    ``metadata["help"]`` says what it does.
    """

    # --- data split -------------------------------------------------------------------
    seed: int = _setting(0, "seeds the weights, the patch sampling and the data order")
    val_count: int = _setting(9, "the last N cases (sorted by name) are validation cases")
    val_fraction: float | None = _setting(None, "fraction of cases for validation; overrides val_count")
    # --- transforms -------------------------------------------------------------------
    a_min: float = _setting(-57.0, "lower end of the HU window, mapped to b_min")
    a_max: float = _setting(164.0, "upper end of the HU window, mapped to b_max")
    b_min: float = _setting(0.0, "intensity the window's lower end maps to")
    b_max: float = _setting(1.0, "intensity the window's upper end maps to")
    clip: bool = _setting(True, "clip intensities outside the window")
    orientation: str = _setting("RAS", "axis codes every volume is turned to")
    pixdim: Triple = _setting((1.5, 1.5, 2.0), "voxel size in mm the volumes are resampled to")
    patch_size: IntTriple = _setting((96, 96, 96), "training patch size in voxels")
    num_samples: int = _setting(4, "random patches per volume and step")
    pos: float = _setting(1.0, "weight of spleen-centred patches")
    neg: float = _setting(1.0, "weight of background-centred patches")
    augment: bool = _setting(False, "random flips, 90-degree rotations and intensity shifts")
    transform_order: str = _setting("tutorial", "tutorial: HU window, crop to the body, orientation, "
                                                "spacing (MONAI's spleen tutorial); bundle: orientation, "
                                                "spacing, HU window, no crop (MONAI's spleen bundle)")
    # --- model ------------------------------------------------------------------------
    channels: tuple[int, ...] = _setting((16, 32, 64, 128, 256), "UNet feature channels per level")
    strides: tuple[int, ...] = _setting((2, 2, 2, 2), "UNet downsampling stride per level")
    num_res_units: int = _setting(2, "residual units per UNet block")
    norm: str = _setting("batch", "normalisation layer of the UNet")
    learning_rate: float = _setting(1e-4, "Adam learning rate")
    lr_decay: float = _setting(1.0, "the learning rate is multiplied by this after every epoch "
                                    "(ExponentialLR; 1 = constant, the tutorial's)")
    loss: str = _setting("dice", "dice (the tutorial's) or dicece (Dice + cross-entropy, MONAI's bundle)")
    # --- training ---------------------------------------------------------------------
    max_epochs: int = _setting(600, "train up to this epoch")
    val_interval: int = _setting(2, "validate every N epochs")
    batch_size: int = _setting(2, "volumes per training step (each gives num_samples patches)")
    cache_rate: float = _setting(1.0, "fraction of preprocessed volumes kept in memory")
    num_workers: int = _setting(4, "data-loader worker processes")
    loader: str = _setting("standard", "standard (DataLoader) or thread (ThreadDataLoader)")
    device: str = _setting("auto", "auto, cpu, cuda or cuda:N")
    amp: bool = _setting(False, "mixed precision (CUDA only: a run on the CPU with amp is refused)")
    # --- inference --------------------------------------------------------------------
    roi_size: IntTriple = _setting((160, 160, 160), "sliding-window size in voxels")
    sw_batch_size: int = _setting(4, "windows per forward pass")
    overlap: float = _setting(0.25, "overlap of neighbouring windows")
    blend_mode: str = _setting("constant", "how overlapping windows are blended")
    keep_largest_component: bool = _setting(False, "keep only the largest connected spleen component")
    # --- decided from the data, recorded with the run ---------------------------------
    #: cases read with their header turned back (spleen_helpers.data.anatomy): train decides them
    #: from the images and labels, the run's config.json and checkpoints record them
    turned_cases: tuple[str, ...] = ()
    profile: str = field(default="msd", compare=False)

    def __post_init__(self) -> None:
        for name in ("pixdim", "patch_size", "roi_size", "channels", "strides", "turned_cases"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    # -----------------------------------------------------------------------------------
    @classmethod
    def synthetic(cls, **overrides: Any) -> "CourseConfig":
        """Small settings for the synthetic phantom, so the whole course runs on a laptop CPU in minutes.

        The phantom's own voxel size, patches that hold a whole cross-section of the spleen,
        one residual unit per block, Dice + cross-entropy and a decaying learning rate:
        docs/decisions.md says why each, BENCHMARKS.md §8 what they reach.

        >>> CourseConfig.synthetic().pixdim, CourseConfig.synthetic(max_epochs=5).max_epochs
        ((2.5, 2.5, 6.0), 5)
        """
        values: dict[str, Any] = dict(
            val_count=4,
            pixdim=(2.5, 2.5, 6.0),
            patch_size=(64, 64, 16),
            num_samples=1,
            channels=(16, 32, 64, 128, 256),
            num_res_units=1,
            learning_rate=4e-3,
            lr_decay=0.9934,
            loss="dicece",
            max_epochs=240,
            val_interval=5,
            batch_size=2,
            num_workers=0,
            loader="standard",
            roi_size=(64, 64, 16),
            sw_batch_size=4,
            overlap=0.5,
            profile="synthetic",
        )
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> "CourseConfig":
        """Return a copy with ``changes`` applied (validated); unknown names are a ConfigError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(None, f"unknown setting(s) {sorted(unknown)}; "
                                    f"known: {sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CourseConfig":
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(None, f"unknown setting(s) {sorted(unknown)}")
        return cls(**values)

    @property
    def size_multiple(self) -> int:
        """Product of the UNet strides: patch and window sizes must be divisible by it.

        >>> CourseConfig().size_multiple
        16
        """
        return math.prod(self.strides)

    def model_signature(self) -> dict[str, Any]:
        """The settings that fix the network's shape; a checkpoint must match them to load."""
        return {"channels": list(self.channels), "strides": list(self.strides),
                "num_res_units": self.num_res_units, "norm": self.norm}

    def validate(self) -> None:
        """Raise ConfigError for values no run could use."""
        def bad(msg: str) -> None:
            raise ConfigError(None, msg)

        if self.max_epochs < 0:
            bad(f"max_epochs must be >= 0, got {self.max_epochs}")
        if self.val_interval < 1:
            bad(f"val_interval must be >= 1, got {self.val_interval}")
        if self.batch_size < 1 or self.num_samples < 1:
            bad("batch_size and num_samples must be >= 1")
        if not 0.0 <= self.cache_rate <= 1.0:
            bad(f"cache_rate must be within [0, 1], got {self.cache_rate}")
        if self.val_fraction is not None and not 0.0 < self.val_fraction < 1.0:
            bad(f"val_fraction must be within (0, 1), got {self.val_fraction}")
        if self.val_count < 0:
            bad(f"val_count must be >= 0, got {self.val_count}")
        if self.a_max <= self.a_min:
            bad(f"a_max ({self.a_max}) must be greater than a_min ({self.a_min})")
        if len(self.pixdim) != 3 or any(p <= 0 for p in self.pixdim):
            bad(f"pixdim must be three positive spacings in mm, got {self.pixdim}")
        if len(self.channels) != len(self.strides) + 1:
            bad(f"channels ({len(self.channels)}) must be one longer than strides ({len(self.strides)})")
        factor = self.size_multiple
        for name in ("patch_size", "roi_size"):
            size = getattr(self, name)
            if len(size) != 3 or any(int(s) < 1 for s in size):
                bad(f"{name} must be three positive integers, got {size}")
            if any(int(s) % factor for s in size):
                bad(f"{name} {size} must be divisible by {factor} (the product of the UNet strides)")
            if any(int(s) > 512 for s in size):
                bad(f"{name} {size} is larger than allowed (512 voxels per axis)")
        if not 0.0 < self.lr_decay <= 1.0:
            bad(f"lr_decay must be within (0, 1], got {self.lr_decay}")
        if not 0.0 <= self.overlap < 1.0:
            bad(f"overlap must be within [0, 1), got {self.overlap}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                bad(f"{name} must be one of {', '.join(map(repr, allowed))}, got {getattr(self, name)!r}")
        if not (self.device in {"auto", "cpu", "cuda"} or self.device.startswith("cuda:")):
            bad(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")


def is_synthetic_dataset(data_dir: str | os.PathLike) -> bool:
    """True when ``data_dir/dataset.json`` was written by the course's phantom generator."""
    try:
        meta = json.loads((Path(data_dir) / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("name") == SYNTHETIC_DATASET_NAME


def config_for(data_dir: str | os.PathLike | None = None, **overrides: Any) -> CourseConfig:
    """The right defaults for a data directory: synthetic settings for the phantom, else the tutorial's.

    >>> config_for(None).profile
    'synthetic'
    """
    if data_dir is None or str(data_dir) == "" or is_synthetic_dataset(data_dir):
        return CourseConfig.synthetic(**overrides)
    return CourseConfig(**overrides)
