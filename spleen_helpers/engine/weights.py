"""Which weights to segment with: a run's checkpoint, a bundle, or a choice made for the learner.

:func:`choose_model` ("auto") takes a model trained on real data, else the pretrained bundle,
else the phantom model, and says why; :func:`load_model_or_bundle` loads any of them.

Example:
    >>> choice = choose_model("auto")          # doctest: +SKIP
    >>> choice.source, choice.config.pixdim    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..ground.errors import CheckpointError, ConfigError, DataError
from ..ground.paths import RunLayout, default_runs_dir
from ..ground.settings import CourseConfig, config_for
from .bundle import (
    BUNDLE_NAME,
    INFERENCE_CONFIG,
    default_bundle_root,
    find_pretrained,
    open_bundle,
)
from .checkpoint import load_model
from .loop import train

__all__ = ["find_or_train_model", "ModelChoice", "choose_model", "load_model_or_bundle"]


def _trained_on(run_dir: str | os.PathLike) -> str | None:
    """The data folder a run recorded in its ``config.json`` (None when it recorded none)."""
    try:
        return json.loads(RunLayout(run_dir).config_json.read_text()).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None


def find_or_train_model(run_dir: str | os.PathLike | None, data_dir: str | os.PathLike,
                        fallback_dir: str | os.PathLike, max_epochs: int,
                        cfg: CourseConfig | None = None, log: Callable[[str], None] = print,
                        **overrides: Any) -> Path:
    """The best model of ``run_dir``; if there is none, a short run trained in ``fallback_dir``.

    ``run_dir`` itself is never written to (the training notebook or CLI owns it); a model
    there that was trained on another data set than ``data_dir`` is still used, with a line
    that says so (``run_dir=None`` skips it: the short run only). An existing best model in
    ``fallback_dir`` is reused unless its run recorded another data set than ``data_dir``
    (another phantom seed is another data set); then the short run is trained again.
    Training validates after its last epoch, so the short run always saves a best model.

    >>> find_or_train_model("runs/unet", "data/synthetic", "runs/04/fallback", 2)  # doctest: +SKIP
    """
    wanted = str(Path(data_dir).resolve())
    best = RunLayout(run_dir).best_model if run_dir is not None else None
    if best is not None and best.is_file():
        trained_on = _trained_on(run_dir)
        log(f"using the trained model {best}" + ("" if trained_on in (None, wanted) else
            f" (note: trained on {trained_on}, not on {wanted})"))
        return best
    fallback = RunLayout(fallback_dir).best_model
    nothing = f"no model in {run_dir}" if run_dir is not None else "no model given"
    if fallback.is_file() and _trained_on(fallback_dir) in (None, wanted):   # None: not recorded
        log(f"{nothing}; using the short fallback run {fallback}")
        return fallback
    if int(max_epochs) < 1:
        raise ConfigError(None, f"max_epochs of the fallback training must be >= 1, got {max_epochs}")
    cfg = cfg or config_for(data_dir)
    epochs = int(max_epochs)
    cfg = cfg.replace(**(overrides | {"max_epochs": epochs}))
    log(f"{nothing} (train one with notebook 03 or `spleen-course train`); "
        f"training a short {epochs}-epoch run in {fallback_dir} instead")
    result = train(data_dir, fallback_dir, cfg, overwrite=True, progress=False, log=log)
    if not result.best_model_path.is_file():  # pragma: no cover - train validates after the last epoch
        raise DataError(fallback_dir, "training saved no best model")
    return result.best_model_path


@dataclass(frozen=True)
class ModelChoice:
    """The weights :func:`choose_model` picked, why, and the model and settings to predict with."""

    source: str            # "trained", "pretrained", "fallback" or "file"
    path: Path
    model: torch.nn.Module
    config: CourseConfig
    reason: str

    @property
    def real_anatomy(self) -> bool:
        """True when these weights were trained on real CTs: the bundle, or a run whose recorded
        settings are not the phantom's (``config.profile``)."""
        return self.config.profile != "synthetic"


_NEVER_REAL = "it has never seen real anatomy, so expect little of it on a real CT"


def choose_model(weights: str | os.PathLike = "auto", *, run_dir: str | os.PathLike | None = None,
                 bundle_root: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
                 fallback_dir: str | os.PathLike | None = None, fallback_epochs: int = 1,
                 device: str | torch.device = "cpu",
                 log: Callable[[str], None] = print) -> ModelChoice:
    """Pick the weights to segment with, and say which and why in one line (``log``).

    ``weights``:

    * ``"auto"``: weights that have seen real anatomy whenever there are any. The learner's
      trained model (``run_dir``, default ``<runs>/unet``) if its run was trained on real data
      (its recorded settings are not the phantom's); else the pretrained bundle if it was
      downloaded (into ``bundle_root``); else the phantom-trained model, with a line saying
      that it has never seen real anatomy: the learner's, or a short training run on the
      phantom (``fallback_epochs`` epochs on ``data_dir`` in ``fallback_dir``);
    * ``"phantom"``: that phantom-trained model, whatever else there is (notebook 05's
      domain-shift experiment);
    * ``"trained"``, ``"pretrained"``: the learner's model or the bundle (a CheckpointError
      when it is missing);
    * anything else: a checkpoint file or bundle folder.

    >>> choice = choose_model("auto")          # doctest: +SKIP
    >>> choice.source, choice.real_anatomy     # doctest: +SKIP
    """
    choice = str(weights)
    best = RunLayout(Path(run_dir) if run_dir else default_runs_dir() / "unet").best_model
    if choice not in ("auto", "phantom", "trained", "pretrained"):
        model, cfg = load_model_or_bundle(choice, None, device)
        picked = ModelChoice("file", Path(choice), model, cfg, f"the weights you named: {choice}")
        log(f"weights: {picked.reason}")
        return picked
    if choice == "trained" and not best.is_file():
        raise CheckpointError(best, "no trained model here; train one with notebook 03 or `spleen-course train`")
    mine = load_model(best, None, device) if best.is_file() else None
    mine_real = mine is not None and mine[1].profile != "synthetic"
    if mine is not None and (choice == "trained" or (choice == "auto" and mine_real)):
        model, cfg = mine
        kind = (f"trained on real data ({cfg.profile} settings)" if mine_real
                else f"trained on the phantom: {_NEVER_REAL}")
        picked = ModelChoice("trained", best, model, cfg, f"your model {best}, {kind}")
    elif choice in ("auto", "pretrained") and (bundle := find_pretrained(bundle_root)) is not None:
        model, cfg = bundle.load(device)
        why = "" if choice == "pretrained" else (
            f" (your model {best} was trained on the phantom)" if mine is not None
            else " (no model of yours trained on real data)")
        picked = ModelChoice("pretrained", bundle.path, model, cfg,
                             f"the pretrained bundle, trained on real CTs{why}: {bundle.describe()}")
    elif choice == "pretrained":
        raise CheckpointError(Path(bundle_root or default_bundle_root()) / BUNDLE_NAME,
                              "no pretrained bundle here; run `spleen-course pretrained` first")
    elif mine is not None and not mine_real:
        model, cfg = mine
        missing = "" if choice == "phantom" else "; no model trained on real data and no pretrained bundle were found"
        picked = ModelChoice("trained", best, model, cfg,
                             f"your model {best}, trained on the phantom: {_NEVER_REAL}{missing}")
    else:
        if data_dir is None or fallback_dir is None:
            raise ConfigError(None, "no model trained on real data, no pretrained bundle and no phantom model: "
                                    "give data_dir and fallback_dir for a short training run on the phantom")
        path = find_or_train_model(None, data_dir, fallback_dir, fallback_epochs, log=log)
        model, cfg = load_model(path, None, device)
        missing = "" if choice == "phantom" else "; no model trained on real data and no pretrained bundle were found"
        picked = ModelChoice("fallback", path, model, cfg,
                             f"a short {fallback_epochs}-epoch run on the phantom ({path}): {_NEVER_REAL}{missing}")
    log(f"weights: {picked.reason}")
    return picked


# ------------------------------------------------------------------------- choosing weights
def load_model_or_bundle(model: str | os.PathLike, cfg: CourseConfig | None = None,
                         device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CourseConfig]:
    """Load a training run's checkpoint, a bundle folder, or ``"pretrained"`` (the downloaded bundle).

    A bundle brings its own settings (``cfg`` is then ignored). A missing pretrained bundle
    is a CheckpointError that says how to download it.

    >>> load_model_or_bundle("pretrained")          # doctest: +SKIP
    """
    if str(model) == "pretrained":
        bundle = find_pretrained()
        if bundle is None:
            raise CheckpointError(default_bundle_root() / BUNDLE_NAME,
                                  "no pretrained bundle here; run `spleen-course pretrained` first")
        return bundle.load(device)
    path = Path(model)
    if path.is_dir() and (path / INFERENCE_CONFIG).is_file():
        return open_bundle(path).load(device)
    return load_model(path, cfg, device)
