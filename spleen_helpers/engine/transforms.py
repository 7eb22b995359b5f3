"""MONAI transform pipelines for training, validation and inference.

The pipelines are MONAI's spleen tutorial, parameterised by :class:`CourseConfig`:
``LoadImaged → EnsureChannelFirstd → ScaleIntensityRanged → CropForegroundd → Orientationd →
Spacingd → SpatialPadd → RandCropByPosNegLabeld`` (the last for training only).

``SpatialPadd`` is the course's one addition: a volume smaller than the training patch after
resampling (the synthetic phantom, or a small real field of view) is *padded* up to the patch
size instead of failing in the random crop. It is a no-op for volumes at least that large.

:class:`TurnHeaderd` heads the pipeline only when a data set needs it: cases whose spleen
lies where a header turned 180° puts it (:mod:`spleen_helpers.data.anatomy`) are read with world x
and y of their header negated, image and label alike (``cfg.turned_cases``).

Example:
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> names = [type(t).__name__ for t in train_transforms(CourseConfig()).transforms]
    >>> names[:4]
    ['LoadImaged', 'EnsureChannelFirstd', 'ScaleIntensityRanged', 'CropForegroundd']
    >>> names[-2:]
    ['RandCropByPosNegLabeld', 'EnsureTyped']
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
)

from ..data.anatomy import LPS_AS_RAS
from ..data.nifti import case_name
from ..ground.settings import CourseConfig

__all__ = ["TurnHeaderd", "preprocessing_steps", "train_transforms", "val_transforms", "infer_transforms"]


# Orientation labels for (x, y, z) stated explicitly: MONAI 1.5+ warns that its default changes.
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class TurnHeaderd(MapTransform):
    """Read the loaded images as if their header were turned 180° about the body's long axis.

    Replaces each key's affine by ``LPS_AS_RAS @ affine`` (world x and y negated), voxels
    untouched: the same matrix :func:`~spleen_helpers.data.anatomy.write_lps_as_ras_twin` writes a
    twin with, so an LPS-as-RAS header comes back exactly true, and a true one gives the
    layout the deploy SDK feeds MONAI's spleen bundle. ``cases``: only the items whose first
    key's file has one of these case names (:func:`~spleen_helpers.data.nifti.case_name`), all of
    its keys alike; None turns every item. Goes right after ``LoadImaged``. MONAI has no
    transform that rewrites an affine without resampling, hence this one; it records no
    trace (``Invertd`` undoes the steps after it and leaves the corrected header).

    >>> from monai.data import MetaTensor
    >>> item = {"image": MetaTensor(torch.zeros(2, 2, 2), meta={"filename_or_obj": "spleen_3.nii.gz"})}
    >>> TurnHeaderd("image", cases=("spleen_3",))(item)["image"].affine.diagonal().tolist()
    [-1.0, -1.0, 1.0, 1.0]
    """

    def __init__(self, keys: KeysCollection, cases: tuple[str, ...] | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.cases = None if cases is None else tuple(cases)

    def _wanted(self, d: Mapping[Hashable, Any]) -> bool:
        if self.cases is None:
            return True
        first = d[self.keys[0]]
        return case_name(str(getattr(first, "meta", {}).get("filename_or_obj", ""))) in self.cases

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if not self._wanted(d):
            return d
        for key in self.key_iterator(d):
            affine = torch.as_tensor(d[key].affine, dtype=torch.float64)
            d[key].affine = torch.as_tensor(LPS_AS_RAS, dtype=torch.float64) @ affine
        return d


def preprocessing_steps(cfg: CourseConfig, keys: tuple[str, ...] = ("image", "label"),
                        pad_to_patch: bool = True, resample_dtype: Any = np.float64,
                        turned_cases: tuple[str, ...] | None = ()) -> list:
    """The deterministic steps shared by every pipeline, one MONAI transform per list item.

    Notebook 02 applies them one at a time to show what each does. With
    ``cfg.transform_order == "bundle"`` the steps follow the inference pipeline of MONAI's
    ``spleen_ct_segmentation`` bundle instead (orientation and resampling first, then the HU
    window, no crop), which its pretrained weights expect.

    >>> [type(t).__name__ for t in preprocessing_steps(CourseConfig(transform_order="bundle"), ("image",), False)]
    ['LoadImaged', 'EnsureChannelFirstd', 'Orientationd', 'Spacingd', 'ScaleIntensityRanged']

    ``resample_dtype`` is what ``Spacingd`` computes in (MONAI's default, ``float64``; the fast
    inference path of :mod:`spleen_helpers.engine.predict` uses ``float32``). :class:`TurnHeaderd`
    follows ``LoadImaged`` for the cases named in ``turned_cases`` (None: every item; the
    training and validation pipelines pass ``cfg.turned_cases``).
    """
    modes = tuple("bilinear" if k == "image" else "nearest" for k in keys)
    scale = ScaleIntensityRanged(keys=["image"], a_min=cfg.a_min, a_max=cfg.a_max,
                                 b_min=cfg.b_min, b_max=cfg.b_max, clip=cfg.clip)
    geometry = [Orientationd(keys=keys, axcodes=cfg.orientation, labels=RAS_LABELS),
                Spacingd(keys=keys, pixdim=cfg.pixdim, mode=modes,
                         **({} if resample_dtype is np.float64 else {"dtype": resample_dtype}))]
    steps: list = [LoadImaged(keys=keys, reader="NibabelReader", image_only=False)]
    if turned_cases is None or turned_cases:
        steps.append(TurnHeaderd(keys=keys, cases=turned_cases))
    steps.append(EnsureChannelFirstd(keys=keys))
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
    steps = preprocessing_steps(cfg, keys, turned_cases=cfg.turned_cases)
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

    The cases of ``cfg.turned_cases`` are read with their header turned back, as in training.
    Metadata is kept so that predictions can be inverted to the original image space.
    """
    return Compose(preprocessing_steps(cfg, ("image", "label"), pad_to_patch=False,
                                       turned_cases=cfg.turned_cases))


def infer_transforms(cfg: CourseConfig, resample_dtype: Any = np.float64, turned: bool = False) -> Compose:
    """Inference pipeline for new studies: image only, invertible with ``Invertd``.

    ``turned``: read the image with its header turned (:class:`TurnHeaderd`).
    """
    return Compose(preprocessing_steps(cfg, ("image",), pad_to_patch=False, resample_dtype=resample_dtype,
                                       turned_cases=None if turned else ()))
