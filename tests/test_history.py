"""Training history: best-epoch bookkeeping, JSON/CSV round trip, the learning-curve plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from spleen_helpers.ground.errors import DataError
from spleen_helpers.engine.history import TrainingHistory, plot_learning_curves

# Validation every 2 epochs; the best Dice is at epoch 6, the third validation (index 2).
# The tutorial's `val_dice[best_metric_epoch // 2]` would pick index 3 (epoch 8, 0.61) instead.
LOSSES = [0.90, 0.80, 0.70, 0.65, 0.60, 0.55, 0.52, 0.50]
VALS = {2: 0.30, 4: 0.55, 6: 0.72, 8: 0.61}


def make_history() -> TrainingHistory:
    h = TrainingHistory()
    for epoch, loss in enumerate(LOSSES, start=1):
        if epoch in VALS:
            h.record_validation(epoch, VALS[epoch])
        h.record_epoch(epoch, loss, 1.5 + epoch / 10)
    return h


def test_record_and_best_logic() -> None:
    h = TrainingHistory()
    assert (h.best_metric, h.best_metric_epoch, h.last_epoch) == (-1.0, -1, 0)
    assert h.record_validation(2, 0.4) is True
    assert h.record_validation(4, 0.3) is False
    assert h.record_validation(6, 0.4) is False          # a tie keeps the earlier epoch
    assert (h.best_metric, h.best_metric_epoch) == (0.4, 2)
    assert h.record_validation(8, 0.41) is True
    assert (h.best_metric, h.best_metric_epoch) == (0.41, 8)
    assert h.val_epochs == [2, 4, 6, 8] and h.val_dice == [0.4, 0.3, 0.4, 0.41]


def test_no_validation_yet_is_never_shown_as_a_number(tmp_path: Path) -> None:
    """The loop's "nothing yet" (-1) stays inside: the text, the JSON, the CSV and the plot say so."""
    h = TrainingHistory()
    h.record_epoch(1, 0.9, 1.0)
    assert not h.validated and h.describe_best() == "no validation yet" and h.describe_last(", ") == ""
    h.save(tmp_path)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["best_metric"] is None and saved["best_metric_epoch"] is None
    assert "-1" not in (tmp_path / "history.csv").read_text()
    again = TrainingHistory.load(tmp_path)
    assert again.to_dict() == h.to_dict() and (again.best_metric, again.best_metric_epoch) == (-1.0, -1)
    fig = plot_learning_curves(again)
    assert not fig.axes[1].get_legend() and len(fig.axes[1].lines) == 1   # no best marked
    h.record_validation(1, 0.25)
    assert h.validated and h.describe_best() == "best val Dice 0.2500 at epoch 1"
    assert h.describe_last("; ") == "; val Dice 0.2500 (epoch 1)"


def test_epoch_bookkeeping() -> None:
    h = make_history()
    assert h.epochs == list(range(1, 9))
    assert h.last_epoch == 8
    assert h.wall_seconds == pytest.approx(sum(1.5 + e / 10 for e in range(1, 9)))
    assert (h.best_metric, h.best_metric_epoch) == (0.72, 6)


def test_save_writes_json_and_csv_that_round_trip(tmp_path: Path) -> None:
    h = make_history()
    h.save(tmp_path)
    again = TrainingHistory.load(tmp_path)                # a run directory ...
    assert again.to_dict() == h.to_dict()
    assert TrainingHistory.load(tmp_path / "history.json").to_dict() == h.to_dict()   # ... or the file
    assert json.loads((tmp_path / "history.json").read_text())["best_metric_epoch"] == 6
    with open(tmp_path / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == h.epochs
    assert [float(r["train_loss"]) for r in rows] == pytest.approx(LOSSES)
    assert {int(r["epoch"]): float(r["val_dice"]) for r in rows if r["val_dice"]} == VALS
    assert [r["val_dice"] for r in rows if int(r["epoch"]) not in VALS] == [""] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "history.json"]  # no temp files


def test_from_dict_ignores_unknown_keys() -> None:
    values = make_history().to_dict() | {"note": "added later"}
    assert TrainingHistory.from_dict(values).best_metric_epoch == 6


def test_load_missing_or_corrupt_history_is_a_one_line_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no training history here"):
        TrainingHistory.load(tmp_path)
    (tmp_path / "history.json").write_text("{not json")
    with pytest.raises(DataError, match="not a valid training history") as info:
        TrainingHistory.load(tmp_path)
    assert "\n" not in str(info.value) and "history.json" in str(info.value)


def best_marker(fig: Figure):
    stars = [line for ax in fig.axes for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == 1
    return stars[0]


def test_plot_marks_the_best_epoch_on_its_own_validation_point() -> None:
    h = make_history()
    fig = plot_learning_curves(h)
    assert isinstance(fig, Figure)
    star = best_marker(fig)
    x, y = star.get_xdata()[0], star.get_ydata()[0]
    assert (x, y) == (h.best_metric_epoch, h.best_metric) == (6, 0.72)
    # the star sits on the plotted validation curve, at the validation of that epoch
    ax_dice = star.axes
    curve = next(line for line in ax_dice.lines if line is not star)
    assert list(curve.get_xdata()) == h.val_epochs and list(curve.get_ydata()) == h.val_dice
    assert dict(zip(curve.get_xdata(), curve.get_ydata()))[x] == y
    # the tutorial's indexing points at another validation: the one two epochs later
    assert h.val_dice[h.best_metric_epoch // 2] != y
    assert "epoch 6" in ax_dice.get_legend().get_texts()[0].get_text()


def test_plot_marks_the_best_epoch_on_the_loss_curve_too() -> None:
    fig = plot_learning_curves(make_history())
    ax_loss = fig.axes[0]
    vlines = [line for line in ax_loss.lines if list(line.get_xdata()) == [6, 6]]
    assert len(vlines) == 1
    loss_curve = ax_loss.lines[0]
    assert list(loss_curve.get_xdata()) == list(range(1, 9))
    assert list(loss_curve.get_ydata()) == LOSSES


def test_plot_with_validation_every_epoch_and_best_first() -> None:
    h = TrainingHistory()
    for epoch, dice in [(1, 0.8), (2, 0.5), (3, 0.6)]:
        h.record_epoch(epoch, 1.0 / epoch, 1.0)
        h.record_validation(epoch, dice)
    star = best_marker(plot_learning_curves(h))
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (1, 0.8)


def test_plot_without_validation_has_no_best_marker(tmp_path: Path) -> None:
    h = TrainingHistory()
    h.record_epoch(1, 0.9, 1.0)
    fig = plot_learning_curves(h, tmp_path / "curves.png")
    assert not [line for ax in fig.axes for line in ax.lines if line.get_marker() == "*"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
