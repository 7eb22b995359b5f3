"""Checkpoints: atomic writes, safe loading, RNG state round trips."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from spleen_helpers.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.errors import CheckpointError
from spleen_helpers.engine.transforms import train_transforms
from tests.support import CodeRunningPayload


def test_round_trip_plain_data(tmp_path):
    state = {"epoch": 7, "weights": torch.arange(5.0), "nested": {"best": 0.5, "list": [1, 2]}}
    path = save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 7 and loaded["nested"] == {"best": 0.5, "list": [1, 2]}
    assert torch.equal(loaded["weights"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_the_payload_runs_code_when_unpickled_unsafely(tmp_path):
    """The control for the two refusals below: the same payload, unpickled with the full
    pickle machinery, does create its marker, so their "no marker" assertions can fail."""
    marker = tmp_path / "PWNED_BY_PICKLE"
    pickle.loads(pickle.dumps({"x": CodeRunningPayload(marker)}))
    assert marker.exists()


def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED_BY_CHECKPOINT"
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {}, "payload": CodeRunningPayload(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "refused" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "PWNED_BY_CHECKPOINT"
    path = tmp_path / "pickled.pt"
    path.write_bytes(pickle.dumps({"x": CodeRunningPayload(marker)}))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    path = save_checkpoint({"w": torch.ones(1000)}, tmp_path / "c.pt")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "c.pt")

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_rng_states_survive_a_safe_round_trip(tmp_path):
    pipeline = train_transforms(CourseConfig(augment=True))
    pipeline.set_random_state(seed=3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng_state(pipeline)
    expected = (random.random(), np.random.rand(), torch.rand(1).item(),
                [t.R.rand() for t in pipeline.transforms if hasattr(t, "R")])
    save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], pipeline)
    again = (random.random(), np.random.rand(), torch.rand(1).item(),
             [t.R.rand() for t in pipeline.transforms if hasattr(t, "R")])
    assert again == expected


def test_rng_restore_refuses_a_different_pipeline():
    state = capture_rng_state(train_transforms(CourseConfig(augment=True)))
    with pytest.raises(CheckpointError, match="transform random states"):
        restore_rng_state(state, train_transforms(CourseConfig(augment=False)))


@pytest.mark.parametrize("content", [b"hello", b"not a checkpoint at all", b"PK\x03\x04junk"])
def test_arbitrary_bytes_are_not_called_unsafe(tmp_path, content):
    path = tmp_path / "odd.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "refused" not in str(err.value) and "\n" not in str(err.value)


def test_no_unsafe_loading_anywhere_in_the_package():
    """Every file the course reads back is a safe checkpoint, JSON, CSV or NIfTI: no code path
    unpickles with the full pickle machinery, and no on-disk cache (PersistentDataset) exists
    whose location a user did not choose."""
    import re
    from pathlib import Path

    import spleen_helpers

    offenders = []
    sources = sorted(Path(spleen_helpers.__file__).parent.rglob("*.py"))
    assert any(p.parent.name == "tools" for p in sources)    # the subpackage is searched too
    for source in sources:
        text = source.read_text()
        for line_no, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"torch\.load\(", code) and "weights_only=True" not in code:
                offenders.append(f"{source}:{line_no}: {line.strip()}")
            if re.search(r"pickle\.loads?\(|allow_pickle\s*=\s*True|PersistentDataset|LMDBDataset", code):
                offenders.append(f"{source}:{line_no}: {line.strip()}")
    assert not offenders, offenders
