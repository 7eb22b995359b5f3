"""Checkpoints that are written atomically and loaded safely, the RNG states that make
resume exact, and loading a trained UNet from a run.

* Writing goes to a temporary file beside the target, is fsync'ed, then renamed with
  ``os.replace``: a crash or ``SIGKILL`` mid-write leaves the previous checkpoint intact.
* Reading uses ``torch.load(..., weights_only=True)``, which unpickles only tensors and plain
  containers: a crafted file that would run code when unpickled is refused with a
  :class:`CheckpointError` instead.
* Everything stored is plain data (numpy RNG arrays become lists) so that the safe loader
  accepts it.
* :func:`load_model` rebuilds the UNet from the configuration stored beside the weights and
  refuses, in one line, weights that do not fit it.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> p = Path(tempfile.mkdtemp()) / "ckpt.pt"
    >>> _ = save_checkpoint({"epoch": 3, "w": torch.ones(2)}, p)
    >>> load_checkpoint(p)["epoch"]
    3
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..ground.errors import CheckpointError, CourseError
from ..ground.files import atomic_path
from ..ground.settings import CourseConfig
from .model import build_unet

__all__ = [
    "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "capture_rng_state",
    "restore_rng_state", "check_model_signature", "load_model"
]


FORMAT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` with ``torch.save``; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) onto ``map_location``.

    A GPU-saved checkpoint loads on a CPU-only machine. Unsafe, corrupt, truncated or missing
    files raise :class:`CheckpointError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        with open(path, "rb") as fh:
            is_pickle = fh.read(1) == b"\x80"  # the PROTO opcode that opens every modern pickle
        if "Unsupported global" in text or "GLOBAL" in text or is_pickle:
            raise CheckpointError(path, "refused: it holds pickled Python objects that could run "
                                        "code when loaded (only tensors and plain data are "
                                        "accepted)") from None
        raise CheckpointError(path, "is not a PyTorch checkpoint (unreadable pickle data)") from None
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError... for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"is corrupt, truncated or not a checkpoint "
                                    f"({type(exc).__name__}: {reason[:120]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"holds a {type(state).__name__}, expected a dict of tensors")
    return state


# ----------------------------------------------------------------------- random states
def _randomizables(root: Any) -> list[Any]:
    """Every object with a numpy ``R`` random state reachable from a MONAI transform tree.

    MONAI keeps one ``RandomState`` per random transform, and some keep more inside (e.g.
    ``RandCropByPosNegLabeld.cropper``); all of them must be saved for an exact resume.
    """
    found: list[Any] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, np.ndarray, torch.Tensor)):
            return
        seen.add(id(obj))
        if isinstance(getattr(obj, "R", None), np.random.RandomState):
            found.append(obj)
        children = getattr(obj, "transforms", None)
        if isinstance(children, (list, tuple)):
            for child in children:
                visit(child)
        if hasattr(obj, "__dict__") and type(obj).__module__.startswith("monai"):
            for name in sorted(vars(obj)):
                value = vars(obj)[name]
                if hasattr(value, "__dict__") and type(value).__module__.startswith("monai"):
                    visit(value)

    visit(root)
    return found


def _np_state_to_plain(state: tuple) -> list:
    kind, keys, pos, has_gauss, cached = state
    return [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]


def _np_state_from_plain(plain: list) -> tuple:
    kind, keys, pos, has_gauss, cached = plain
    return (kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached)


def capture_rng_state(transforms: Any = None) -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states plus every MONAI transform's random state."""
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "numpy": _np_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
        "transforms": [_np_state_to_plain(t.R.get_state()) for t in _randomizables(transforms)]
        if transforms is not None else [],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], transforms: Any = None) -> None:
    """Inverse of :func:`capture_rng_state`; the transform tree must have the same structure."""
    version = state["python"][-1]
    random.setstate((version, tuple(state["python"][:-1]), None))
    np.random.set_state(_np_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if transforms is not None:
        targets = _randomizables(transforms)
        if len(targets) != len(state["transforms"]):
            raise CheckpointError(None, f"the checkpoint holds {len(state['transforms'])} transform "
                                        f"random states but the pipeline has {len(targets)}; it was "
                                        "saved with other transform settings (e.g. augment)")
        for t, s in zip(targets, state["transforms"]):
            t.R.set_state(_np_state_from_plain(s))


# ------------------------------------------------------------------------- trained models
def check_model_signature(saved: dict[str, Any], cfg: CourseConfig, path: str | os.PathLike) -> None:
    """A checkpoint only fits a network of the same shape: say so instead of a shape traceback."""
    if saved != cfg.model_signature():
        diffs = [f"{k}: checkpoint {saved.get(k)} vs now {v}" for k, v in cfg.model_signature().items()
                 if saved.get(k) != v]
        raise CheckpointError(path, "was saved with a different model configuration ("
                                    + "; ".join(diffs) + ")")


def load_model(path: str | os.PathLike, cfg: CourseConfig | None = None,
               device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CourseConfig]:
    """Load a UNet from ``best_metric_model.pth`` or ``checkpoint.pt`` (safely), in eval mode.

    The network's configuration comes from the file; ``cfg`` (if given) supplies the
    inference settings and must describe the same network. A plain state dict (as MONAI's
    tutorial saves) is accepted when ``cfg`` is given.

    >>> model, cfg = load_model("runs/unet/best_metric_model.pth")   # doctest: +SKIP
    """
    path = Path(path)
    device = torch.device(device) if isinstance(device, str) else device
    state = load_checkpoint(path, map_location=device)
    if "model_state_dict" in state:
        try:
            saved_cfg = CourseConfig.from_dict(state["config"]) if "config" in state else None
        except (CourseError, TypeError, ValueError) as exc:
            raise CheckpointError(path, f"holds an unusable configuration ({exc})") from None
        weights = state["model_state_dict"]
    else:
        saved_cfg, weights = None, state
    if cfg is None:
        if saved_cfg is None:
            raise CheckpointError(path, "holds bare weights without a configuration; pass cfg")
        cfg = saved_cfg
    elif saved_cfg is not None:
        check_model_signature(saved_cfg.model_signature(), cfg, path)
    model = build_unet(cfg)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"does not fit the configured UNet ({first})") from None
    return model.to(device).eval(), cfg
