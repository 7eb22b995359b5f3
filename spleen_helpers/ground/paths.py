"""Where the course keeps its files, resolved through the package, never the working directory.

:func:`course_home` is the repository checkout when the package is used from one, else
``~/spleen-course``; ``SPLEEN_COURSE_HOME`` overrides both. :class:`RunLayout` names the
files of a training run.

Example:
    >>> RunLayout("runs/unet").checkpoint.name
    'checkpoint.pt'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError

__all__ = ["PACKAGE_DIR", "course_home", "default_data_dir", "default_runs_dir", "RunLayout", "env_default"]


PACKAGE_DIR = Path(__file__).resolve().parents[1]   # the spleen_helpers folder


def course_home() -> Path:
    """Root for course data and runs: ``$SPLEEN_COURSE_HOME``, the repo checkout, or ``~/spleen-course``."""
    env = os.environ.get("SPLEEN_COURSE_HOME")
    if env:
        return Path(env).expanduser().resolve()
    repo = PACKAGE_DIR.parent
    if (repo / "pyproject.toml").is_file() and (repo / "notebooks").is_dir():
        return repo
    return Path.home() / "spleen-course"


def default_data_dir() -> Path:
    """Where the synthetic phantom is generated when no data directory is given."""
    return course_home() / "data" / "synthetic"


def default_runs_dir() -> Path:
    """Where training runs, predictions and executed notebooks go by default."""
    return course_home() / "runs"


def _run_file(name: str, doc: str) -> property:
    return property(lambda self: self.root / name, doc=f"``{name}``: {doc}")


@dataclass(frozen=True)
class RunLayout:
    """The files of one training run directory, named in one place.

    Training writes them, evaluation and the course runner read them.

    >>> RunLayout("runs/unet").best_model.name
    'best_metric_model.pth'
    """

    root: Path
    CHECKPOINT: ClassVar[str] = "checkpoint.pt"
    BEST_MODEL: ClassVar[str] = "best_metric_model.pth"

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    checkpoint = _run_file(CHECKPOINT, "written atomically after every epoch; what resume continues from")
    best_model = _run_file(BEST_MODEL, "weights and configuration of the best validation epoch")
    history_json = _run_file("history.json", "loss, validation Dice and time per epoch")
    history_csv = _run_file("history.csv", "the same, one row per epoch")
    config_json = _run_file("config.json", "the run's settings and data folder")
    learning_curves = _run_file("learning_curves.png", "loss and validation Dice, best epoch marked")


def env_default(name: str, default: Any) -> Any:
    """Return ``$name`` converted to ``type(default)``, or ``default`` when unset or empty.

    Notebook ``parameters`` cells use this so that tests (nbmake injects nothing) can set
    e.g. ``SPLEEN_QUICK=1`` while papermill still overrides the variable itself.

    >>> env_default("SPLEEN_SURELY_UNSET", 3)
    3
    """
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    try:
        return type(default)(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(None, f"environment variable {name}={raw!r} is not a valid "
                                f"{type(default).__name__}") from exc
