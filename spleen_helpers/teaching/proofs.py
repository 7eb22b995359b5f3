"""Prove that the notebooks' hand-written MONAI code does exactly what the package does.

The notebooks write the lesson's code out in plain cells — the ``Compose([...])`` pipelines,
the training loop, sliding-window inference and ``Invertd`` — run it briefly, then call
these functions to show that :mod:`spleen_helpers` gives the same result before using the
package for the long run. Each ``assert_*`` raises :class:`AssertionError` naming the first
difference, so a notebook cell that calls it fails under ``make test`` as soon as either
side changes: the equality check, not a copy, keeps notebook and package one truth.

Example:
    >>> from monai.transforms import Compose, ScaleIntensityRanged
    >>> mine = Compose([ScaleIntensityRanged(keys=["image"], a_min=-57, a_max=164, b_min=0, b_max=1)])
    >>> theirs = Compose([ScaleIntensityRanged(keys=["image"], a_min=-57, a_max=164, b_min=0, b_max=1)])
    >>> assert_same_pipeline(mine, theirs)
    >>> other = Compose([ScaleIntensityRanged(keys=["image"], a_min=-100, a_max=164, b_min=0, b_max=1)])
    >>> assert_same_pipeline(mine, other)
    Traceback (most recent call last):
    ...
    AssertionError: step 0 (ScaleIntensityRanged): .scaler.a_min is -57 here but -100 in the other pipeline
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["describe_transform", "assert_same_pipeline", "assert_same_data", "assert_same_weights"]


# Attributes that hold a transform's random state or what it drew last, not its settings:
# two pipelines built with the same arguments differ in them until they are seeded alike
# (their outputs are compared for that).
_STATE_ATTRIBUTES = frozenset({"R", "centers"})


def describe_transform(transform: Any) -> Any:
    """A plain, comparable description of a MONAI transform: class and every setting, nested.

    Random states and the last drawn crop centres are left out; small arrays (settings such
    as ``pixdim``) are listed, larger ones described by shape, dtype and a digest of their
    bytes; functions by name.

    >>> from monai.transforms import EnsureChannelFirstd
    >>> describe_transform(EnsureChannelFirstd(keys=["image"]))["class"]
    'EnsureChannelFirstd'
    """
    return _describe(transform, set())


def _describe(obj: Any, seen: set[int]) -> Any:
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        arr = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        if arr.size <= 16:  # settings such as pixdim: readable values
            return {"array": _describe(arr.tolist(), seen), "dtype": str(arr.dtype)}
        return {"array": list(arr.shape), "dtype": str(arr.dtype),
                "sha1": hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()}
    if isinstance(obj, (np.generic, torch.dtype, np.dtype, type)):
        return repr(obj)
    if isinstance(obj, Mapping):
        return {str(k): _describe(v, seen) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_describe(v, seen) for v in obj]
    if callable(obj) and not hasattr(obj, "__dict__"):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    if id(obj) in seen:
        return f"<{type(obj).__name__} seen before>"
    if hasattr(obj, "__dict__") and (type(obj).__module__.startswith("monai") or hasattr(obj, "transforms")):
        seen = seen | {id(obj)}
        out: dict[str, Any] = {"class": type(obj).__name__}
        for name, value in sorted(vars(obj).items()):
            if name not in _STATE_ATTRIBUTES:
                out[name] = _describe(value, seen)
        return out
    if callable(obj):  # a function or functools.partial
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return repr(obj)


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """Where two descriptions first differ, as ``.attr.sub is X here but Y in the other``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in b:
                return f"{where}.{key} exists here but not in the other pipeline"
            if key not in a:
                return f"{where}.{key} exists in the other pipeline but not here"
            found = _first_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    if a != b:
        return f"{where or 'value'} is {a!r} here but {b!r} in the other pipeline"
    return None


def _steps(pipeline: Any) -> list[Any]:
    return list(getattr(pipeline, "transforms", pipeline))


def assert_same_pipeline(mine: Any, other: Any) -> None:
    """Assert that two pipelines (``Compose`` or lists of transforms) hold the same transforms,
    in the same order, with the same arguments; the message names the first difference."""
    a, b = _steps(mine), _steps(other)
    names_a = [type(t).__name__ for t in a]
    names_b = [type(t).__name__ for t in b]
    if names_a != names_b:
        raise AssertionError(f"the steps differ: {names_a} here, {names_b} in the other pipeline")
    for i, (x, y) in enumerate(zip(a, b)):
        found = _first_difference(describe_transform(x), describe_transform(y))
        if found:
            raise AssertionError(f"step {i} ({names_a[i]}): {found}")


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality in which NaN equals NaN (NIfTI headers hold NaN slopes)."""
    if a.is_floating_point():
        nan_a, nan_b = a.isnan(), b.isnan()
        return bool(torch.equal(nan_a, nan_b)) and bool(torch.equal(a[~nan_a], b[~nan_b]))
    return bool(torch.equal(a, b))


def assert_same_data(mine: Any, other: Any, where: str = "") -> None:
    """Assert that two transform outputs are identical: the same keys, every array bit for bit
    (values, shape and dtype), the same affines and metadata.

    >>> import torch
    >>> assert_same_data({"image": torch.ones(2)}, {"image": torch.ones(2)})
    >>> assert_same_data({"image": torch.ones(2)}, {"image": torch.zeros(2)})
    Traceback (most recent call last):
    ...
    AssertionError: ['image']: the values differ (largest difference 1)
    """
    here = where or "the data"
    if isinstance(mine, Mapping) and isinstance(other, Mapping):
        if set(mine) != set(other):
            raise AssertionError(f"{here}: keys {sorted(map(str, mine))} here, "
                                 f"{sorted(map(str, other))} in the other")
        for key in mine:
            assert_same_data(mine[key], other[key], f"{where}[{key!r}]")
        return
    if isinstance(mine, (torch.Tensor, np.ndarray)) or isinstance(other, (torch.Tensor, np.ndarray)):
        a, b = torch.as_tensor(np.asarray(mine) if isinstance(mine, np.ndarray) else mine), \
            torch.as_tensor(np.asarray(other) if isinstance(other, np.ndarray) else other)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise AssertionError(f"{here}: shape {tuple(a.shape)} {a.dtype} here, "
                                 f"{tuple(b.shape)} {b.dtype} in the other")
        if not _equal(a.as_subclass(torch.Tensor), b.as_subclass(torch.Tensor)):
            diff = (a.double() - b.double()).abs().nan_to_num(float("inf")).max().item()
            raise AssertionError(f"{here}: the values differ (largest difference {diff:.3g})")
        for attr in ("affine",):
            if hasattr(mine, attr) and hasattr(other, attr):
                assert_same_data(getattr(mine, attr), getattr(other, attr), f"{where}.{attr}")
        return
    if isinstance(mine, Sequence) and not isinstance(mine, str) \
            and isinstance(other, Sequence) and not isinstance(other, str):
        if len(mine) != len(other):
            raise AssertionError(f"{here}: {len(mine)} items here, {len(other)} in the other")
        for i, (x, y) in enumerate(zip(mine, other)):
            assert_same_data(x, y, f"{where}[{i}]")
        return
    both_nan = isinstance(mine, float) and isinstance(other, float) and math.isnan(mine) and math.isnan(other)
    if mine != other and not both_nan:
        raise AssertionError(f"{here}: {mine!r} here, {other!r} in the other")


def assert_same_weights(mine: Any, other: Any) -> None:
    """Assert that two networks (or state dicts) hold bit-identical parameters and buffers.

    >>> import torch
    >>> a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    >>> _ = b.load_state_dict(a.state_dict()); assert_same_weights(a, b)
    """
    a = mine.state_dict() if hasattr(mine, "state_dict") else mine
    b = other.state_dict() if hasattr(other, "state_dict") else other
    if list(a) != list(b):
        raise AssertionError(f"the networks have different layers: {sorted(set(a) ^ set(b))[:4]}")
    for key in a:
        if not torch.equal(a[key].cpu(), b[key].cpu()):
            diff = (a[key].double().cpu() - b[key].double().cpu()).abs().max().item()
            raise AssertionError(f"{key}: the weights differ (largest difference {diff:.3g})")
