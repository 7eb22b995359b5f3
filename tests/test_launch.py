"""Training with torch.distributed: two gloo processes on the CPU, as CI runs them.

The processes are real (spawned, one process group, DistributedDataParallel); the phantom and
the network are tiny, so a launch costs little more than starting two Python processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spleen_helpers.engine.checkpoint import load_checkpoint
from spleen_helpers.ground.settings import CourseConfig
from spleen_helpers.ground.paths import RunLayout
from spleen_helpers.data.dataset import load_datalist, split_datalist
from spleen_helpers.engine.launch import launch
from spleen_helpers.tools.train import train_arguments, training_overrides
from spleen_helpers.ground.errors import CheckpointError, DataError
from spleen_helpers.tools.cli import main
from spleen_helpers.engine.loop import steps_per_epoch

TINY = dict(channels=(4, 8, 16), strides=(2, 2), patch_size=(16, 16, 16), roi_size=(32, 32, 32),
            pixdim=(6.0, 6.0, 6.0), num_samples=2, batch_size=1, val_count=2, val_interval=2,
            learning_rate=1e-3, seed=3)
TINY_ARGS = ["--channels", "4", "8", "16", "--strides", "2", "2", "--patch-size", "16", "16", "16",
             "--roi-size", "32", "32", "32", "--pixdim", "6", "6", "6", "--val-count", "2",
             "--batch-size", "1", "--no-progress"]


def _spy_worker(data_dir: str, root: str, cfg: dict) -> None:
    """In each process: 2 epochs, a resume to 3, and 3 straight epochs; every file write noted.

    Runs in the spawned processes (importable from here: spawn passes sys.path on).
    """
    import torch.distributed as dist

    import spleen_helpers.engine.loop as tr

    rank = dist.get_rank()
    real_save = tr.save_checkpoint

    def noting_save(state, path):
        with open(Path(root) / f"writes-{rank}.txt", "a") as fh:
            fh.write(f"{Path(path).parent.name}/{Path(path).name}\n")
        return real_save(state, path)

    tr.save_checkpoint = noting_save
    config = CourseConfig.from_dict(cfg)
    quiet = dict(progress=False, log=lambda _: None)
    tr.train(data_dir, Path(root) / "stopped", config.replace(max_epochs=2), **quiet)
    tr.train(data_dir, Path(root) / "stopped", config.replace(max_epochs=3), resume=True, **quiet)
    tr.train(data_dir, Path(root) / "straight", config.replace(max_epochs=3), **quiet)


def test_two_gloo_processes_train_resume_exactly_and_only_rank_0_writes(synthetic_dir: Path,
                                                                         tmp_path: Path) -> None:
    cfg = CourseConfig.synthetic(**TINY)
    launch(2, _spy_worker, str(synthetic_dir), str(tmp_path), cfg.to_dict(), backend="gloo")

    n_train = len(split_datalist(load_datalist(synthetic_dir), cfg)[0])
    per_epoch = steps_per_epoch(n_train, cfg, world_size=2)
    assert per_epoch == 2 < steps_per_epoch(n_train, cfg)        # 4 cases: 2 per process, batch 1
    stopped, straight = (load_checkpoint(RunLayout(tmp_path / d).checkpoint) for d in ("stopped", "straight"))
    adam_steps = {int(s["step"]) for s in straight["optimizer_state_dict"]["state"].values()}
    assert adam_steps == {3 * per_epoch}                          # the documented number of steps
    # the resumed run continues where it stopped: the weights and losses of the straight run
    assert stopped["epoch"] == straight["epoch"] == 3 and stopped["world_size"] == 2
    assert stopped["train_loss"] == straight["train_loss"]
    for key, value in straight["model_state_dict"].items():
        assert torch.equal(value, stopped["model_state_dict"][key]), key
    assert len(stopped["rng_states"]) == 2
    # validation after the last epoch of each call, gathered over both processes' cases
    assert stopped["history"]["val_epochs"] == [2, 3] and straight["history"]["val_epochs"] == [2, 3]
    assert stopped["val_dice"] == straight["val_dice"]
    # every checkpoint and best model was written by rank 0, once per epoch
    assert not (tmp_path / "writes-1.txt").exists()
    writes = (tmp_path / "writes-0.txt").read_text().split()
    assert writes.count("straight/checkpoint.pt") == 3 and writes.count("stopped/checkpoint.pt") == 3
    history = json.loads((tmp_path / "straight" / "history.json").read_text())
    assert history["epochs"] == [1, 2, 3] and history["train_loss"] == straight["train_loss"]


def _validation_worker(data_dir: str, cfg: dict, out: str) -> None:
    """In each process: its part of the validation cases, scored by a threshold network, gathered."""
    import torch.distributed as dist

    from spleen_helpers.engine.loop import build_loaders, validate_dice
    from tests.support import ThresholdNet, level_for

    config = CourseConfig.from_dict(cfg)
    rank, world = dist.get_rank(), dist.get_world_size()
    _, val_loader, _ = build_loaders(*split_datalist(load_datalist(data_dir), config), config, rank=rank,
                                     world_size=world)
    dice = validate_dice(ThresholdNet(level_for(100, config)), val_loader, config, torch.device("cpu"))
    Path(out, f"dice-{rank}.json").write_text(json.dumps({"dice": dice, "cases": len(val_loader)}))


def test_validation_is_gathered_over_every_process(synthetic_dir: Path, tmp_path: Path) -> None:
    """Three validation cases over two processes (two and one): each process returns the mean
    over all three, what one process scores alone -- not its own part's."""
    from spleen_helpers.engine.loop import build_loaders, validate_dice
    from tests.support import ThresholdNet, level_for

    cfg = CourseConfig.synthetic(**(TINY | {"val_count": 3}))
    launch(2, _validation_worker, str(synthetic_dir), cfg.to_dict(), str(tmp_path), backend="gloo")
    got = [json.loads((tmp_path / f"dice-{r}.json").read_text()) for r in (0, 1)]
    assert [g["cases"] for g in got] == [2, 1]
    _, val_loader, _ = build_loaders(*split_datalist(load_datalist(synthetic_dir), cfg), cfg)
    metric = validate_dice(ThresholdNet(level_for(100, cfg)), val_loader, cfg, torch.device("cpu"))
    assert got[0]["dice"] == got[1]["dice"] == pytest.approx(metric, abs=1e-6)
    per_case = []
    for batch in val_loader:   # the cases differ, so a mean over a part would show
        one = validate_dice(ThresholdNet(level_for(100, cfg)), [batch], cfg, torch.device("cpu"))
        per_case.append(one)
    assert max(per_case) - min(per_case) > 0.01


def test_cli_nproc_trains_and_a_resume_with_another_count_is_refused(synthetic_dir: Path, tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    argv = ["train", "--data-dir", str(synthetic_dir), "--out", str(run), *TINY_ARGS]
    assert main([*argv, "--nproc", "2", "--max-epochs", "1"]) == 0
    out = capfd.readouterr().out
    assert "2 processes (gloo)" in out and "best val Dice" in out and str(RunLayout(run).best_model) in out
    assert load_checkpoint(RunLayout(run).checkpoint)["world_size"] == 2
    assert main([*argv, "--resume", "--max-epochs", "2"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "written by a run of 2 process(es)" in err and "--nproc 2" in err


def test_an_error_in_the_processes_is_one_line_from_the_launcher(tmp_path: Path) -> None:
    """A DataError met inside the spawned processes reaches the caller once, as itself."""
    from spleen_helpers.engine.launch import _train_process

    cfg = CourseConfig.synthetic(**TINY)
    with pytest.raises(DataError, match="does not exist|no dataset.json") as err:
        launch(2, _train_process, str(tmp_path / "missing"), str(tmp_path / "run"), cfg.to_dict(),
               False, False, False, backend="gloo")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_torchrun_form(synthetic_dir: Path, tmp_path: Path) -> None:
    """The documented ``torchrun -m spleen_helpers.tools.train`` form (torch.distributed.run is torchrun)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "spleen_helpers.tools.train", "--data-dir", str(synthetic_dir), "--out", str(run),
           "--max-epochs", "1", *TINY_ARGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("training on cpu, 2 processes (gloo)") == 1       # rank 0 alone logs
    assert load_checkpoint(RunLayout(run).checkpoint)["world_size"] == 2


def test_options_are_the_course_settings() -> None:
    args = train_arguments().parse_args(["--out", "r", "--pixdim", "3", "3", "3", "--norm", "instance",
                                         "--amp"])
    assert training_overrides(args) == {"pixdim": [3.0, 3.0, 3.0], "norm": "instance", "amp": True}
    assert args.nproc == 1 and args.backend == "auto"
    with pytest.raises(SystemExit):
        train_arguments().parse_args(["--out", "r", "--nproc", "0"])


def test_nccl_needs_a_gpu_per_process() -> None:
    if torch.cuda.device_count() >= 64:
        pytest.skip("this machine has 64 GPUs")
    from spleen_helpers.ground.errors import ConfigError

    with pytest.raises(ConfigError, match="needs 64 GPUs"):
        launch(64, print, backend="nccl")


def test_checkpoint_error_kind_survives_the_trip() -> None:
    from spleen_helpers.engine.launch import _error_from_record, _error_record

    again = _error_from_record(_error_record(CheckpointError("/r/checkpoint.pt", "is corrupt")))
    assert isinstance(again, CheckpointError) and str(again) == "/r/checkpoint.pt: is corrupt"


def test_too_few_validation_cases_for_the_processes_is_refused(synthetic_dir: Path) -> None:
    from spleen_helpers.ground.errors import ConfigError
    from spleen_helpers.engine.loop import build_loaders

    cfg = CourseConfig.synthetic(**TINY)
    train_files, val_files = split_datalist(load_datalist(synthetic_dir), cfg)
    with pytest.raises(ConfigError, match="1 validation case.* for 2 processes"):
        build_loaders(train_files, val_files[:1], cfg, rank=0, world_size=2)
