"""Training history: per-epoch loss, validation Dice, timing; saved as JSON and CSV; plotted.

The learning-curve plot marks the best epoch on the validation point it belongs to. (The course's
source guide plots with ``train_loss[best_metric_epoch]`` and ``val_dice[best_metric_epoch // 2]``,
both one off, because epochs count from 1 and validation runs every ``val_interval`` epochs.)

Example:
    >>> h = TrainingHistory()
    >>> h.record_epoch(1, 0.9, 1.5); h.record_epoch(2, 0.7, 1.4)
    >>> h.record_validation(2, 0.55)  # a new best
    True
    >>> h.best_metric, h.best_metric_epoch
    (0.55, 2)
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..ground.errors import DataError
from ..ground.figures import NotebookFigure, save_figure
from ..ground.files import atomic_path, write_json_atomic
from ..ground.paths import RunLayout

__all__ = ["TrainingHistory", "plot_learning_curves"]


@dataclass
class TrainingHistory:
    """Everything a learning curve needs; epochs count from 1."""

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    val_epochs: list[int] = field(default_factory=list)
    val_dice: list[float] = field(default_factory=list)
    best_metric: float = -1.0
    best_metric_epoch: int = -1

    def record_epoch(self, epoch: int, loss: float, seconds: float) -> None:
        self.epochs.append(int(epoch))
        self.train_loss.append(float(loss))
        self.epoch_seconds.append(float(seconds))

    def record_validation(self, epoch: int, dice: float) -> bool:
        """Add a validation result; return True when it is a new best."""
        self.val_epochs.append(int(epoch))
        self.val_dice.append(float(dice))
        if dice > self.best_metric:
            self.best_metric, self.best_metric_epoch = float(dice), int(epoch)
            return True
        return False

    @property
    def validated(self) -> bool:
        """True once a validation was recorded (before that, ``best_metric`` is the loop's -1)."""
        return self.best_metric_epoch >= 1

    def describe_best(self) -> str:
        """``"best val Dice 0.9512 at epoch 75"``, or ``"no validation yet"``.

        >>> TrainingHistory().describe_best()
        'no validation yet'
        """
        if not self.validated:
            return "no validation yet"
        return f"best val Dice {self.best_metric:.4f} at epoch {self.best_metric_epoch}"

    def describe_last(self, prefix: str = "") -> str:
        """``prefix + "val Dice 0.9412 (epoch 80)"`` for the last validation; ``""`` before one.

        >>> h = TrainingHistory(); h.record_validation(5, 0.5); h.describe_last(", ")
        True
        ', val Dice 0.5000 (epoch 5)'
        """
        if not self.val_dice:
            return ""
        return f"{prefix}val Dice {self.val_dice[-1]:.4f} (epoch {self.val_epochs[-1]})"

    @property
    def wall_seconds(self) -> float:
        return float(sum(self.epoch_seconds))

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data; before the first validation the best Dice and epoch are ``None``, not -1."""
        values = asdict(self)
        if not self.validated:
            values.update(best_metric=None, best_metric_epoch=None)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainingHistory":
        """Inverse of :meth:`to_dict`; accepts the -1 of older files as well as ``None``."""
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        for name, unset in (("best_metric", -1.0), ("best_metric_epoch", -1)):
            if known.get(name, unset) is None:
                known[name] = unset
        return cls(**known)

    def save(self, run_dir: str | os.PathLike) -> None:
        """Write ``history.json`` and ``history.csv`` (one row per epoch) atomically."""
        layout = RunLayout(run_dir)
        write_json_atomic(self.to_dict(), layout.history_json)
        dice_at = dict(zip(self.val_epochs, self.val_dice))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["epoch", "train_loss", "val_dice", "epoch_seconds"])
        for epoch, loss, secs in zip(self.epochs, self.train_loss, self.epoch_seconds):
            writer.writerow([epoch, f"{loss:.6f}",
                             f"{dice_at[epoch]:.6f}" if epoch in dice_at else "", f"{secs:.3f}"])
        with atomic_path(layout.history_csv) as tmp:
            tmp.write_text(buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainingHistory":
        """Read ``history.json`` (or the one inside a run directory)."""
        path = Path(path)
        if path.is_dir():
            path = RunLayout(path).history_json
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise DataError(path, "no training history here (train a model first)") from None
        except (ValueError, TypeError) as exc:
            raise DataError(path, f"is not a valid training history ({exc})") from None


def plot_learning_curves(history: TrainingHistory, path: str | os.PathLike | None = None):
    """Plot loss per epoch and validation Dice per validation, best epoch marked; save if ``path``.

    Returns the matplotlib figure.
    """
    fig = NotebookFigure(figsize=(11, 4))
    ax_loss, ax_dice = fig.subplots(1, 2)
    ax_loss.plot(history.epochs, history.train_loss, color="tab:blue")
    ax_loss.set(title="Training loss", xlabel="epoch", ylabel="loss")
    ax_dice.plot(history.val_epochs, history.val_dice, marker="o", color="tab:green")
    ax_dice.set(title="Validation mean Dice", xlabel="epoch", ylabel="Dice", ylim=(0, 1))
    if history.best_metric_epoch in history.val_epochs:
        best = history.best_metric_epoch
        ax_dice.plot([best], [history.best_metric], marker="*", markersize=16, color="tab:red",
                     label=f"best {history.best_metric:.3f} @ epoch {best}")
        ax_loss.axvline(best, color="tab:red", linestyle="--", linewidth=1)
        ax_dice.legend(loc="lower right")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
