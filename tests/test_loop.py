"""Training: it learns, validation Dice is right, exact resume on every loader, safe and fitting
checkpoints, outputs of a run, crash safety, mixed-precision state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from monai.utils import set_determinism

from spleen_helpers.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.paths import RunLayout
from spleen_helpers.data.dataset import load_datalist, split_datalist
from spleen_helpers.ground.errors import CheckpointError, ConfigError
from spleen_helpers.engine.history import TrainingHistory
from spleen_helpers.engine.model import build_loss, build_optimizer, build_unet
from spleen_helpers.engine.loop import build_loaders, make_train_step, restore_training_state, train, training_state, validate_dice
from spleen_helpers.engine.weights import find_or_train_model
from tests.support import CodeRunningPayload, ThresholdNet, tiny_cfg

CHECKPOINT_NAME, BEST_MODEL_NAME = RunLayout.CHECKPOINT, RunLayout.BEST_MODEL

# A very small network and grid: the loop's logic, not its accuracy, is under test here.
TINY = dict(channels=(4, 8, 16), strides=(2, 2), patch_size=(16, 16, 16), roi_size=(32, 32, 32),
            pixdim=(6.0, 6.0, 6.0), num_samples=2, batch_size=2, val_count=2, val_interval=2,
            learning_rate=1e-3, seed=7)


def tiny_config(**changes) -> CourseConfig:
    return CourseConfig.synthetic(**{**TINY, **changes})


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def straight_run(synthetic_dir, tmp_path_factory):
    """Four epochs in one go: the reference every interrupted run must reproduce."""
    return train(synthetic_dir, tmp_path_factory.mktemp("straight"), tiny_config(max_epochs=4),
                 progress=False, log=lambda _: None)


@pytest.mark.slow
def test_run_writes_every_output(straight_run):
    run = straight_run.run_dir
    for name in (CHECKPOINT_NAME, BEST_MODEL_NAME, "history.json", "history.csv",
                 "learning_curves.png", "config.json"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert history["epochs"] == [1, 2, 3, 4] and history["val_epochs"] == [2, 4]
    assert len(history["train_loss"]) == 4 and all(s > 0 for s in history["epoch_seconds"])
    assert (run / "history.csv").read_text().count("\n") == 5
    ckpt = load_checkpoint(run / CHECKPOINT_NAME)
    for key in ("model_state_dict", "optimizer_state_dict", "train_loss", "val_dice", "best_metric",
                "best_metric_epoch", "epoch", "rng_state", "config"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 4
    assert ckpt["best_metric"] == max(history["val_dice"])
    assert ckpt["best_metric_epoch"] == history["val_epochs"][history["val_dice"].index(max(history["val_dice"]))]


# The loaders the course uses: the synthetic profile's (a DataLoader without worker processes),
# the real-data profile's (a DataLoader with worker processes: each epoch's workers draw their
# seeds from torch's RNG) and the ThreadDataLoader offered by ``loader="thread"``.
LOADERS = {
    "synthetic default": {k: getattr(CourseConfig.synthetic(), k) for k in ("loader", "num_workers")},
    "real-data default": {k: getattr(CourseConfig(), k) for k in ("loader", "num_workers")},
    "thread": {"loader": "thread", "num_workers": 0},
}


def test_the_loader_settings_are_the_profiles() -> None:
    assert LOADERS["synthetic default"] == {"loader": "standard", "num_workers": 0}
    assert LOADERS["real-data default"]["loader"] == "standard"
    assert LOADERS["real-data default"]["num_workers"] > 0      # worker processes are exercised


def assert_same_run(a: dict, b: dict) -> None:
    """Two checkpoints of the same epoch hold bit-identical weights, optimiser state and history."""
    assert a["epoch"] == b["epoch"]
    assert_same_weights(a["model_state_dict"], b["model_state_dict"])
    assert a["train_loss"] == b["train_loss"] and a["val_dice"] == b["val_dice"]
    assert a["best_metric_epoch"] == b["best_metric_epoch"]
    assert a["optimizer_state_dict"]["state"].keys() == b["optimizer_state_dict"]["state"].keys()
    for group_a, group_b in zip(a["optimizer_state_dict"]["state"].values(),
                                b["optimizer_state_dict"]["state"].values()):
        assert_same_weights(group_a, group_b)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 4 workers on 2 cores
@pytest.mark.parametrize("loader", list(LOADERS))
def test_resume_is_exact_on_every_loader(loader, straight_run, synthetic_dir, tmp_path):
    """2 + 2 epochs give bit for bit what 4 epochs in one go give (CPU, fixed seed)."""
    settings = LOADERS[loader]
    if loader == "synthetic default":
        straight = straight_run
    else:
        straight = train(synthetic_dir, tmp_path / "straight", tiny_config(max_epochs=4, **settings),
                         progress=False, log=lambda _: None)
    run = tmp_path / "interrupted"
    first = train(synthetic_dir, run, tiny_config(max_epochs=2, **settings), progress=False, log=lambda _: None)
    assert first.history.epochs == [1, 2]
    resumed = train(synthetic_dir, run, tiny_config(max_epochs=4, **settings), resume=True, progress=False,
                    log=lambda _: None)
    assert resumed.epochs_run == 2
    saved = json.loads((run / "config.json").read_text())
    assert {k: saved[k] for k in settings} == settings            # the loader under test was used
    assert_same_run(load_checkpoint(straight.checkpoint_path), load_checkpoint(resumed.checkpoint_path))
    assert_same_weights(load_checkpoint(straight.best_model_path)["model_state_dict"],
                        load_checkpoint(resumed.best_model_path)["model_state_dict"])


def test_every_run_ends_with_a_validation_and_a_best_model(synthetic_dir, tmp_path, capsys) -> None:
    """Three epochs with validation every five: validated after the last one, as a normal
    validation; the CLI names a best model that exists and never prints the -1 of "none yet"."""
    from spleen_helpers.tools.cli import main

    run = tmp_path / "run"
    args = ["train", "--data-dir", str(synthetic_dir), "--out", str(run), "--max-epochs", "3",
            "--val-interval", "5", "--no-progress", "--channels", "4", "8", "16", "--strides", "2", "2",
            "--patch-size", "16", "16", "16", "--roi-size", "32", "32", "32", "--pixdim", "6", "6", "6",
            "--val-count", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    history = json.loads((run / "history.json").read_text())
    assert history["val_epochs"] == [3] and history["best_metric_epoch"] == 3
    assert f"best val Dice {history['best_metric']:.4f} at epoch 3; best model: {run / BEST_MODEL_NAME}" in out
    assert (run / BEST_MODEL_NAME).is_file() and "Dice -1" not in out and "epoch -1" not in out
    assert (run / "history.csv").read_text().splitlines()[-1].split(",")[2] != ""   # epoch 3 has a Dice
    assert main(args[:3] + ["--out", str(tmp_path / "none"), "--max-epochs", "0"] + args[7:]) == 0
    assert "no validation yet; no best model yet" in capsys.readouterr().out


@pytest.mark.slow
def test_an_extra_validation_leaves_training_unchanged(straight_run, synthetic_dir, tmp_path) -> None:
    """2 epochs (validated after the last), then resumed to 4 = 4 straight (validated at 2 and 4
    by the interval): the same weights and losses; validation never draws training's random numbers."""
    first = train(synthetic_dir, tmp_path, tiny_config(max_epochs=2, val_interval=4), progress=False,
                  log=lambda _: None)
    assert first.history.val_epochs == [2]
    resumed = train(synthetic_dir, tmp_path, tiny_config(max_epochs=4, val_interval=4), resume=True,
                    progress=False, log=lambda _: None)
    assert resumed.history.val_epochs == [2, 4]           # the interrupted run's extra validation stays
    a, b = load_checkpoint(straight_run.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    assert a["train_loss"] == b["train_loss"]
    assert_same_weights(a["model_state_dict"], b["model_state_dict"])


@pytest.mark.slow
def test_a_decaying_learning_rate_resumes_exactly(synthetic_dir, tmp_path) -> None:
    cfg = tiny_config(max_epochs=3, lr_decay=0.5)
    straight = train(synthetic_dir, tmp_path / "a", cfg, progress=False, log=lambda _: None)
    train(synthetic_dir, tmp_path / "b", cfg.replace(max_epochs=1), progress=False, log=lambda _: None)
    resumed = train(synthetic_dir, tmp_path / "b", cfg, resume=True, progress=False, log=lambda _: None)
    a, b = load_checkpoint(straight.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    assert a["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(cfg.learning_rate * 0.5 ** 3)
    assert b["optimizer_state_dict"]["param_groups"][0]["lr"] == a["optimizer_state_dict"]["param_groups"][0]["lr"]
    assert a["train_loss"] == b["train_loss"]
    assert_same_weights(a["model_state_dict"], b["model_state_dict"])


@pytest.mark.slow
def test_progress_is_one_bar_not_a_line_per_epoch(synthetic_dir, tmp_path, capsys) -> None:
    lines: list[str] = []
    train(synthetic_dir, tmp_path / "bar", tiny_config(max_epochs=3), progress=True, log=lines.append)
    assert len(lines) == 3 and lines[0] == "spleen side of 6 labelled cases: 6 as expected"
    assert lines[1].startswith("training on") and lines[2].startswith("done: best val Dice")
    bar = capsys.readouterr().err
    assert "training: 100%" in bar and "3/3" in bar and "val Dice" in bar
    lines.clear()
    train(synthetic_dir, tmp_path / "lines", tiny_config(max_epochs=3), progress=False, log=lines.append)
    assert [line.split()[:2] for line in lines[2:5]] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]


@pytest.mark.slow
def test_resume_of_finished_run_does_nothing_more(straight_run, synthetic_dir):
    again = train(synthetic_dir, straight_run.run_dir, tiny_config(max_epochs=4), resume=True,
                  progress=False, log=lambda _: None)
    assert again.epochs_run == 0 and again.history.epochs == [1, 2, 3, 4]


@pytest.mark.slow
def test_existing_run_is_not_overwritten_silently(straight_run, synthetic_dir):
    with pytest.raises(ConfigError, match="already exists"):
        train(synthetic_dir, straight_run.run_dir, tiny_config(max_epochs=1), progress=False)


@pytest.mark.slow
def test_resume_with_other_model_is_a_clear_error(straight_run, synthetic_dir):
    with pytest.raises(CheckpointError) as err:
        train(synthetic_dir, straight_run.run_dir, tiny_config(channels=(8, 16, 32), max_epochs=6),
              resume=True, progress=False)
    message = str(err.value)
    assert "different model configuration" in message and "channels" in message
    assert "\n" not in message and CHECKPOINT_NAME in message


def test_resume_refuses_unsafe_checkpoint(synthetic_dir, tmp_path):
    marker = tmp_path / "PWNED"                   # absolute: the one place the payload would write
    torch.save({"model_state_dict": {}, "x": CodeRunningPayload(marker)}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CheckpointError, match="refused"):
        train(synthetic_dir, tmp_path, tiny_config(max_epochs=2), resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.slow
def test_load_model_reads_best_model_and_checks_shape(straight_run):
    model, cfg = load_model(straight_run.best_model_path)
    assert cfg.channels == (4, 8, 16) and not model.training
    with pytest.raises(CheckpointError, match="different model configuration"):
        load_model(straight_run.best_model_path, cfg=tiny_config(channels=(8, 16, 32)))


@pytest.mark.slow
def test_gpu_saved_checkpoint_loads_on_cpu(straight_run, tmp_path):
    """A checkpoint whose tensors claim a CUDA device loads on this CPU-only machine."""
    state = load_checkpoint(straight_run.best_model_path)
    path = tmp_path / "gpu.pth"
    if torch.cuda.is_available():
        state["model_state_dict"] = {k: v.cuda() for k, v in state["model_state_dict"].items()}
        save_checkpoint(state, path)
    else:
        # Rewrite the storage locations torch.save records, as a CUDA machine would.
        torch.save(state, path, _use_new_zipfile_serialization=True)
        _relocate_storages(path, "cpu", "cuda:0")
        with pytest.raises(Exception):
            torch.load(path, weights_only=True)  # without map_location this needs CUDA
    model, _ = load_model(path, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


def _relocate_storages(path: Path, old: str, new: str) -> None:
    """Rewrite the device tags in a torch zip checkpoint's pickle (``'cpu'`` -> ``'cuda:0'``)."""
    import zipfile

    with zipfile.ZipFile(path) as zin:
        items = [(info, zin.read(info)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zout:
        for info, data in items:
            if info.filename.endswith("data.pkl"):
                # pickle protocol 2 writes strings as BINUNICODE: b"X" + 4-byte length + bytes
                old_b, new_b = old.encode(), new.encode()
                data = data.replace(b"X" + len(old_b).to_bytes(4, "little") + old_b,
                                    b"X" + len(new_b).to_bytes(4, "little") + new_b)
            zout.writestr(info, data)


def test_cuda_without_cuda_is_a_config_error(synthetic_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train(synthetic_dir, tmp_path, tiny_config(device="cuda"), progress=False)


# ------------------------------------------------------------------------ crash safety
KILLER = textwrap.dedent("""
    import os, signal, sys, torch
    import spleen_helpers.engine.checkpoint as ckpt
    from spleen_helpers.ground.settings import CourseConfig
    from spleen_helpers.engine.loop import train
    data_dir, run_dir, where, tiny = sys.argv[1], sys.argv[2], sys.argv[3], eval(sys.argv[4])
    cfg = CourseConfig.synthetic(**tiny, max_epochs=4)
    if where == "write":
        real_save, calls = torch.save, []
        def dying_save(obj, f, *a, **k):
            calls.append(f)
            if isinstance(obj, dict) and obj.get("epoch") == 3 and "optimizer_state_dict" in obj:
                with open(f, "wb") as fh:        # half a checkpoint, then the process dies
                    fh.write(b"PK partial")
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **k)
        ckpt.torch.save = dying_save
    else:
        import spleen_helpers.engine.loop as tr
        real_loss, steps = tr.build_loss, []
        def dying_loss(cfg=None):
            fn = real_loss(cfg)
            def wrapped(pred, target):
                steps.append(1)
                if len(steps) == 2 * 1 + 2 + 1:  # third epoch, first step (2 steps per epoch)
                    os.kill(os.getpid(), signal.SIGKILL)
                return fn(pred, target)
            return wrapped
        tr.build_loss = dying_loss
    train(data_dir, run_dir, cfg, progress=False, log=lambda _: None)
""")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["epoch", "write"])
def test_sigkill_then_resume_matches_uninterrupted(straight_run, synthetic_dir, tmp_path, where):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(script), str(synthetic_dir), str(run), where, repr(TINY)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    survivor = load_checkpoint(run / CHECKPOINT_NAME)  # the last good checkpoint is intact
    assert survivor["epoch"] == 2
    assert not [p for p in run.iterdir() if p.name == CHECKPOINT_NAME + ".part"]
    resumed = train(synthetic_dir, run, tiny_config(max_epochs=4), resume=True, progress=False,
                    log=lambda _: None)
    assert resumed.history.epochs == [1, 2, 3, 4]
    assert_same_weights(load_checkpoint(straight_run.checkpoint_path)["model_state_dict"],
                        load_checkpoint(resumed.checkpoint_path)["model_state_dict"])


@pytest.mark.slow
def test_find_or_train_model_prefers_the_run_then_trains_a_fallback(tiny_model: Path, synthetic_dir: Path,
                                                                    tmp_path: Path) -> None:
    assert find_or_train_model(tiny_model.parent, synthetic_dir, tmp_path / "fb", 1,
                               log=lambda _: None) == tiny_model
    assert not (tmp_path / "fb").exists()
    lines: list[str] = []
    with pytest.raises(ConfigError, match="must be >= 1"):
        find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 0)
    path = find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 1,
                               cfg=tiny_cfg(val_interval=2), log=lines.append)
    assert path == tmp_path / "fb" / BEST_MODEL_NAME and path.is_file()   # validated after epoch 1
    assert not (tmp_path / "no_run").exists() and "training a short 1-epoch run" in lines[0]
    # a second call reuses the fallback instead of training again
    assert find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 1,
                               log=lines.append) == path
    assert "using the short fallback run" in lines[-1]


@pytest.mark.slow
def test_a_model_trained_on_another_data_set_is_named_or_trained_again(synthetic_dir: Path,
                                                                        tmp_path: Path) -> None:
    """Another phantom seed is another data set: the fallback run trained on one is not reused
    for the other (it would score its own training cases); a model of the run folder is used,
    with a line that names the data it was trained on."""
    from spleen_helpers.data.phantom import write_synthetic_dataset

    other = write_synthetic_dataset(tmp_path / "other", num_cases=6, seed=1)
    cfg = tiny_cfg(val_interval=2)
    first = find_or_train_model(tmp_path / "no_run", other, tmp_path / "fb", 1, cfg=cfg, log=lambda _: None)
    lines: list[str] = []
    again = find_or_train_model(tmp_path / "no_run", synthetic_dir, tmp_path / "fb", 1, cfg=cfg, log=lines.append)
    assert again == first and "training a short 1-epoch run" in lines[0]
    recorded = json.loads((tmp_path / "fb" / "config.json").read_text())["data_dir"]
    assert recorded == str(synthetic_dir.resolve())
    lines.clear()
    assert find_or_train_model(tmp_path / "fb", other, tmp_path / "fb2", 1, log=lines.append) == again
    assert lines == [f"using the trained model {again} (note: trained on {synthetic_dir.resolve()}, "
                     f"not on {other.resolve()})"]
    assert not (tmp_path / "fb2").exists()


@pytest.mark.slow
def test_train_is_the_plain_monai_loop(synthetic_dir, tmp_path) -> None:
    """train() gives, bit for bit, the losses of the loop notebook 03 writes out by hand (a
    progress bar that wrapped the DataLoader drew one extra random number per epoch)."""
    from monai.utils import set_determinism

    from spleen_helpers.data.dataset import load_datalist, split_datalist
    from spleen_helpers.engine.model import build_loss, build_optimizer, build_scheduler, build_unet
    from spleen_helpers.engine.loop import build_loaders, validate_dice

    cfg = tiny_config(max_epochs=2, val_interval=1)
    for progress in (False, True):
        result = train(synthetic_dir, tmp_path / str(progress), cfg, progress=progress, log=lambda _: None)
        set_determinism(seed=cfg.seed)
        train_loader, val_loader, _ = build_loaders(*split_datalist(load_datalist(synthetic_dir), cfg), cfg)
        model = build_unet(cfg)
        optimizer, loss_function = build_optimizer(model, cfg), build_loss(cfg)
        scheduler = build_scheduler(optimizer, cfg)
        losses, dices = [], []
        for _ in range(cfg.max_epochs):
            model.train()
            total = 0.0
            for batch in train_loader:
                optimizer.zero_grad()
                loss = loss_function(model(batch["image"]), batch["label"])
                loss.backward()
                optimizer.step()
                total += loss.item()
            losses.append(total / len(train_loader))
            scheduler.step()
            dices.append(validate_dice(model, val_loader, cfg, torch.device("cpu")))
        assert result.history.train_loss == losses, f"progress={progress}"
        assert result.history.val_dice == dices, f"progress={progress}"


# ------------------------------------------------------------------------------ learning
# Sixteen epochs of the tiny UNet, validated once at the end.
LEARNING = dict(max_epochs=16, val_interval=16, learning_rate=2e-3, num_res_units=2, lr_decay=0.985)  # as measured


def untrained_dice(data_dir: Path, cfg: CourseConfig) -> float:
    """Validation Dice of the network ``train`` starts from (same seed, loaders and weights)."""
    train_files, val_files = split_datalist(load_datalist(data_dir), cfg)
    set_determinism(seed=cfg.seed)
    _, val_loader, _ = build_loaders(train_files, val_files, cfg)
    return validate_dice(build_unet(cfg), val_loader, cfg, torch.device("cpu"))


@pytest.mark.slow
def test_training_learns_the_phantom(synthetic_dir, tmp_path):
    """A short, fixed budget of training must lower the loss and lift the validation Dice.

    Measured on 2 CPU cores (tiny UNet 4-8-16 with two residual units, 16 epochs on the 4
    training phantoms, Dice + cross-entropy, lr 2e-3 x 0.985 per epoch, seed 7; about 3 s;
    ``LEARNING`` pins these, so a change of the phantom profile does not move them): training
    loss 1.342 in epoch 1 and 0.597 in epoch 16 (ratio 0.45); validation Dice 0.050 untrained
    and 0.613 after training (a gain of 0.56). The thresholds keep about half of each measured effect, so numerical noise
    between machines cannot fail the test, while a network that does not learn (no optimiser
    step: the loss stays near 1.3 and the Dice near 0.05) cannot pass it.
    """
    cfg = tiny_config(**LEARNING)
    before = untrained_dice(synthetic_dir, cfg)
    result = train(synthetic_dir, tmp_path / "run", cfg, progress=False, log=lambda _: None)
    losses, dice = result.history.train_loss, result.history.val_dice
    assert len(losses) == 16 and result.history.val_epochs == [16]
    assert losses[-1] < 0.75 * losses[0], f"the loss did not fall: {losses}"
    assert dice[-1] >= before + 0.3, f"validation Dice {dice[-1]:.3f} vs {before:.3f} untrained"


# ------------------------------------------------------------------- validation Dice
# Hand-made volumes whose spleen-channel Dice is known exactly. The "network" thresholds the
# image (ThresholdNet: logits [-s, s] with s > 0 where the voxel exceeds 0.5), and each image
# *is* the wanted prediction, so the prediction is exactly that mask on every sliding window.
GRID = (24, 24, 24)
DICE_CFG = tiny_config(roi_size=(16, 16, 16))


def cube(lo: int, hi: int, shift: tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """A (1, X, Y, Z) mask holding the cube [lo, hi)^3 moved by ``shift`` voxels."""
    mask = torch.zeros(1, *GRID)
    mask[:, lo + shift[0]:hi + shift[0], lo + shift[1]:hi + shift[1], lo + shift[2]:hi + shift[2]] = 1
    return mask


REFERENCE = cube(4, 14)                                           # 1000 voxels
KNOWN_DICE = {                                                    # prediction -> exact Dice
    "shifted by 2 voxels": (cube(4, 14, (2, 0, 0)), 2 * 800 / 2000),
    "empty": (torch.zeros(1, *GRID), 0.0),
    "on background only": (cube(16, 22), 0.0),
    "identical": (REFERENCE.clone(), 1.0),
    "reference plus as much again": (torch.maximum(REFERENCE, cube(14, 24)), 2 * 1000 / (1000 + 2000)),
}


def dice_of(cases: list[torch.Tensor], batch_size: int) -> float:
    """validate_dice over ``cases`` (predictions of REFERENCE) served in batches of ``batch_size``."""
    loader = [{"image": torch.stack(cases[i:i + batch_size]),
               "label": torch.stack([REFERENCE] * len(cases[i:i + batch_size]))}
              for i in range(0, len(cases), batch_size)]
    return validate_dice(ThresholdNet(0.5), loader, DICE_CFG, torch.device("cpu"))


@pytest.mark.parametrize("name", list(KNOWN_DICE))
def test_validation_dice_of_hand_made_volumes_is_exact(name: str) -> None:
    prediction, expected = KNOWN_DICE[name]
    assert dice_of([prediction], 1) == pytest.approx(expected, abs=1e-6)


def test_validation_dice_is_the_mean_over_cases_across_batches() -> None:
    predictions = [p for p, _ in KNOWN_DICE.values()]
    expected = sum(d for _, d in KNOWN_DICE.values()) / len(KNOWN_DICE)    # 0.49333...
    assert dice_of(predictions, 2) == pytest.approx(expected, abs=1e-6)    # batches of 2, 2 and 1
    assert dice_of(predictions, 5) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------- mixed precision
def test_amp_on_cpu_is_refused_before_any_work(synthetic_dir, tmp_path):
    with pytest.raises(ConfigError, match="amp .*needs a CUDA device.* on cpu") as info:
        train(synthetic_dir, tmp_path / "run", tiny_config(amp=True, device="cpu"), progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "run").exists()


def test_grad_scaler_state_survives_the_checkpoint(tmp_path):
    """The loss scale and growth tracker are saved and restored (CPU: the state round trip)."""
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_unet(cfg)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8, growth_interval=2)
    step = make_train_step(model, optimizer, build_loss(cfg), scaler, torch.device("cpu"), use_amp=True)
    batch = {"image": torch.rand(2, 1, 16, 16, 16), "label": (torch.rand(2, 1, 16, 16, 16) > 0.7).float()}
    for _ in range(3):
        step(batch)
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0 ** 9 and saved["_growth_tracker"] == 1   # grew once, one step towards the next
    path = save_checkpoint(training_state(3, model, optimizer, scaler, TrainingHistory(), None, cfg),
                           tmp_path / CHECKPOINT_NAME)

    fresh_model = build_unet(cfg)
    fresh_optimizer = build_optimizer(fresh_model, cfg)
    fresh = torch.amp.GradScaler("cpu")
    _, epoch = restore_training_state(load_checkpoint(path), fresh_model, fresh_optimizer, fresh, None)
    assert epoch == 3 and fresh.state_dict() == saved and fresh.get_scale() == 2.0 ** 9
    # a checkpoint written without AMP (empty scaler state) leaves a new AMP scaler at its defaults
    plain = training_state(3, model, optimizer, torch.amp.GradScaler("cpu", enabled=False),
                           TrainingHistory(), None, cfg)
    assert plain["scaler_state_dict"] == {}
    other = torch.amp.GradScaler("cpu")
    restore_training_state(plain, fresh_model, fresh_optimizer, other, None)
    assert other.get_scale() == 2.0 ** 16


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision trains on CUDA only")
def test_amp_resume_on_cuda_restores_the_grad_scaler(synthetic_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(synthetic_dir, run, tiny_config(max_epochs=2, device="cuda", amp=True), progress=False,
          log=lambda _: None)
    saved = load_checkpoint(run / CHECKPOINT_NAME)["scaler_state_dict"]
    assert saved["scale"] > 0
    loaded: list[dict] = []
    real_load = torch.amp.GradScaler.load_state_dict

    def spy(self, state):
        loaded.append(dict(state))
        return real_load(self, state)

    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", spy)
    resumed = train(synthetic_dir, run, tiny_config(max_epochs=4, device="cuda", amp=True), resume=True,
                    progress=False, log=lambda _: None)
    assert loaded == [saved] and resumed.history.epochs == [1, 2, 3, 4]
    assert load_checkpoint(run / CHECKPOINT_NAME)["scaler_state_dict"]["scale"] > 0


# ----------------------------------------------------------------- a header that lies
@pytest.fixture(scope="module")
def twin_dir(tmp_path_factory) -> Path:
    """The session's phantom (6 cases, seed 0) with every NIfTI written as its LPS-as-RAS twin."""
    from spleen_helpers.data.phantom import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("twin"), num_cases=6, seed=0, lps_as_ras=True)


@pytest.mark.slow
def test_training_on_turned_headers_is_training_on_the_true_ones(synthetic_dir, twin_dir, tmp_path) -> None:
    """The twin data set (its dataset.json the phantom's own) is found turned from its images and
    labels, recorded in config.json, and trains exactly as the true phantom does."""
    from spleen_helpers.data.dataset import load_datalist

    assert (twin_dir / "dataset.json").read_text() == (synthetic_dir / "dataset.json").read_text()
    cfg = tiny_config(max_epochs=2, val_interval=1)
    lines: list[str] = []
    true = train(synthetic_dir, tmp_path / "true", cfg, progress=False, log=lambda _: None)
    twin = train(twin_dir, tmp_path / "twin", cfg, progress=False, log=lines.append)
    names = tuple(Path(c["image"]).name.split(".")[0] for c in load_datalist(twin_dir))
    assert any(line.startswith("spleen side of 6 labelled cases: 6 turned; turned cases are read") for line in lines)
    assert json.loads((twin.run_dir / "config.json").read_text())["turned_cases"] == list(names)
    assert json.loads((true.run_dir / "config.json").read_text())["turned_cases"] == []
    assert load_checkpoint(twin.checkpoint_path)["config"]["turned_cases"] == list(names)
    assert twin.history.train_loss == true.history.train_loss
    assert twin.history.val_dice == true.history.val_dice


@pytest.mark.slow
def test_resume_keeps_the_decision_the_run_started_with(twin_dir, tmp_path) -> None:
    """Headers kept stay kept on resume (whatever the switch says then), corrected stay corrected,
    and a checkpoint that recorded no decision keeps the files' headers."""
    cfg = tiny_config(max_epochs=1, val_interval=1)
    quiet = {"progress": False, "log": lambda _: None}
    kept = train(twin_dir, tmp_path / "kept", cfg, keep_headers=True, **quiet)
    assert kept.config.turned_cases == ()
    resumed = train(twin_dir, tmp_path / "kept", cfg.replace(max_epochs=2), resume=True, **quiet)
    assert resumed.config.turned_cases == ()
    assert json.loads((tmp_path / "kept" / "config.json").read_text())["turned_cases"] == []

    fixed = train(twin_dir, tmp_path / "fixed", cfg, **quiet)
    assert len(fixed.config.turned_cases) == 6
    again = train(twin_dir, tmp_path / "fixed", cfg.replace(max_epochs=2), resume=True, keep_headers=True, **quiet)
    assert again.config.turned_cases == fixed.config.turned_cases

    state = load_checkpoint(tmp_path / "fixed" / CHECKPOINT_NAME)
    del state["config"]["turned_cases"]                    # a run from before the field existed
    save_checkpoint(state, tmp_path / "fixed" / CHECKPOINT_NAME)
    older = train(twin_dir, tmp_path / "fixed", cfg.replace(max_epochs=3), resume=True, **quiet)
    assert older.config.turned_cases == ()
