"""MONAI transform pipelines for training, validation and inference.

The pipelines are MONAI's spleen tutorial, parameterised by :class:`CourseConfig`:
``LoadImaged → EnsureChannelFirstd → ScaleIntensityRanged → CropForegroundd → Orientationd →
Spacingd → SpatialPadd → RandCropByPosNegLabeld`` (the last for training only).

``SpatialPadd`` is the course's one addition: a volume smaller than the training patch after
resampling (the synthetic phantom, or a small real field of view) is *padded* up to the patch
size instead of failing in the random crop. It is a no-op for volumes at least that large.

Example:
    >>> from spleen_helpers.config import CourseConfig
    >>> names = [type(t).__name__ for t in train_transforms(CourseConfig()).transforms]
    >>> names[:4]
    ['LoadImaged', 'EnsureChannelFirstd', 'ScaleIntensityRanged', 'CropForegroundd']
    >>> names[-2:]
    ['RandCropByPosNegLabeld', 'EnsureTyped']
"""

from __future__ import annotations

from typing import Any

import numpy as np
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from .config import CourseConfig

__all__ = ["train_transforms", "val_transforms", "infer_transforms", "preprocessing_steps"]

# Orientation labels for (x, y, z) stated explicitly: MONAI 1.5+ warns that its default changes.
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def preprocessing_steps(cfg: CourseConfig, keys: tuple[str, ...] = ("image", "label"),
                        pad_to_patch: bool = True, resample_dtype: Any = np.float64) -> list:
    """The deterministic steps shared by every pipeline, one MONAI transform per list item.

    Notebook 02 applies them one at a time to show what each does. With
    ``cfg.transform_order == "bundle"`` the steps follow the inference pipeline of MONAI's
    ``spleen_ct_segmentation`` bundle instead (orientation and resampling first, then the HU
    window, no crop), which its pretrained weights expect.

    >>> [type(t).__name__ for t in preprocessing_steps(CourseConfig(transform_order="bundle"), ("image",), False)]
    ['LoadImaged', 'EnsureChannelFirstd', 'Orientationd', 'Spacingd', 'ScaleIntensityRanged']

    ``resample_dtype`` is what ``Spacingd`` computes in (MONAI's default, ``float64``; the fast
    inference path of :mod:`spleen_helpers.predict` uses ``float32``).
    """
    modes = tuple("bilinear" if k == "image" else "nearest" for k in keys)
    scale = ScaleIntensityRanged(keys=["image"], a_min=cfg.a_min, a_max=cfg.a_max,
                                 b_min=cfg.b_min, b_max=cfg.b_max, clip=cfg.clip)
    geometry = [Orientationd(keys=keys, axcodes=cfg.orientation, labels=RAS_LABELS),
                Spacingd(keys=keys, pixdim=cfg.pixdim, mode=modes,
                         **({} if resample_dtype is np.float64 else {"dtype": resample_dtype}))]
    steps = [LoadImaged(keys=keys, reader="NibabelReader", image_only=False), EnsureChannelFirstd(keys=keys)]
    if cfg.transform_order == "bundle":
        steps += [*geometry, scale]
    else:
        steps += [scale, CropForegroundd(keys=keys, source_key="image", allow_smaller=True), *geometry]
    if pad_to_patch:
        steps.append(SpatialPadd(keys=keys, spatial_size=cfg.patch_size))
    return steps


def train_transforms(cfg: CourseConfig) -> Compose:
    """Training pipeline: preprocessing, then ``num_samples`` random patches per volume.

    Patches are centred on spleen and background voxels with ratio ``pos:neg``; an all-zero
    label falls back to background centres (MONAI warns) instead of failing.
    """
    keys = ("image", "label")
    steps = preprocessing_steps(cfg, keys)
    steps.append(RandCropByPosNegLabeld(
        keys=keys, label_key="label", spatial_size=cfg.patch_size, pos=cfg.pos, neg=cfg.neg,
        num_samples=cfg.num_samples, image_key="image", image_threshold=0))
    if cfg.augment:
        steps += [
            RandFlipd(keys=keys, spatial_axis=[0], prob=0.10),
            RandFlipd(keys=keys, spatial_axis=[1], prob=0.10),
            RandFlipd(keys=keys, spatial_axis=[2], prob=0.10),
            RandRotate90d(keys=keys, prob=0.10, max_k=3),
            RandShiftIntensityd(keys=["image"], offsets=0.10, prob=0.50),
        ]
    steps.append(EnsureTyped(keys=keys, track_meta=False))
    return Compose(steps)


def val_transforms(cfg: CourseConfig) -> Compose:
    """Validation pipeline: the deterministic preprocessing of whole volumes (no patching).

    Metadata is kept so that predictions can be inverted to the original image space.
    """
    return Compose(preprocessing_steps(cfg, ("image", "label"), pad_to_patch=False))


def infer_transforms(cfg: CourseConfig, resample_dtype: Any = np.float64) -> Compose:
    """Inference pipeline for new studies: image only, invertible with ``Invertd``."""
    return Compose(preprocessing_steps(cfg, ("image",), pad_to_patch=False, resample_dtype=resample_dtype))
