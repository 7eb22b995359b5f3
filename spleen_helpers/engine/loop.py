"""Training the 3D UNet: cached data, a resumable loop, validation, best model and history.

One call, :func:`train`, does what MONAI's spleen tutorial does in a notebook cell, plus:

* a checkpoint ``RUN/checkpoint.pt`` written atomically after every epoch, holding the
  tutorial's keys (``model_state_dict``, ``optimizer_state_dict``, ``train_loss``,
  ``val_dice``, ``best_metric``, ``best_metric_epoch``) with ``epoch``, every RNG state and
  the configuration;
* ``resume=True`` continues from the last completed epoch; on CPU with a fixed seed the
  result is bit-identical to a run that was never interrupted (tested);
* ``best_metric_model.pth`` (saved on improvement), ``history.json``/``history.csv`` and
  ``learning_curves.png`` (redrawn after each validation), ``config.json`` beside them.

Example:
    >>> from spleen_helpers.data.phantom import ensure_synthetic_dataset
    >>> data = ensure_synthetic_dataset("/tmp/spleen-doc-data")           # doctest: +SKIP
    >>> result = train(data, "/tmp/spleen-doc-run", max_epochs=4)         # doctest: +SKIP
    >>> result.history.val_epochs                                         # doctest: +SKIP
    [2, 4]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import monai
import torch
import torch.distributed as dist
from monai.data import (
    CacheDataset,
    DataLoader,
    ThreadDataLoader,
    decollate_batch,
    partition_dataset,
)
from monai.transforms import AsDiscrete
from monai.utils import set_determinism
from tqdm.auto import tqdm

from ..data.dataset import load_datalist, side_survey, split_datalist, validate_dataset
from ..ground.errors import CheckpointError, ConfigError
from ..ground.files import write_json_atomic
from ..ground.paths import RunLayout
from ..ground.settings import CourseConfig, config_for
from .checkpoint import (
    FORMAT_VERSION,
    capture_rng_state,
    check_model_signature,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .history import TrainingHistory, plot_learning_curves
from .model import (
    build_dice_metric,
    build_loss,
    build_optimizer,
    build_scheduler,
    build_unet,
    infer_logits,
    resolve_device,
)
from .transforms import train_transforms, val_transforms

__all__ = [
    "TrainResult", "process_group", "steps_per_epoch", "build_loaders", "make_train_step",
    "validate_dice", "training_state", "restore_training_state", "train"
]


@dataclass
class TrainResult:
    """What a call to :func:`train` produced."""

    run_dir: Path
    config: CourseConfig
    history: TrainingHistory
    epochs_run: int

    @property
    def best_metric(self) -> float:
        return self.history.best_metric

    @property
    def best_metric_epoch(self) -> int:
        return self.history.best_metric_epoch

    @property
    def checkpoint_path(self) -> Path:
        return RunLayout(self.run_dir).checkpoint

    @property
    def best_model_path(self) -> Path:
        return RunLayout(self.run_dir).best_model


def process_group() -> tuple[int, int]:
    """``(rank, world size)`` of this process in ``torch.distributed``; ``(0, 1)`` outside it.

    >>> process_group()
    (0, 1)
    """
    if _distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def steps_per_epoch(num_train_cases: int, cfg: CourseConfig, world_size: int = 1) -> int:
    """Optimiser steps per epoch: every process takes this many, each on ``cfg.batch_size`` volumes.

    With ``world_size`` processes each trains on its own ``ceil(cases / world_size)`` cases
    (MONAI's ``partition_dataset``, padded so that all have as many), and the gradients of
    their batches are averaged at each step: one step sees ``world_size * batch_size`` volumes.

    >>> cfg = CourseConfig.synthetic()
    >>> steps_per_epoch(8, cfg), steps_per_epoch(8, cfg, world_size=2), steps_per_epoch(9, cfg, 2)
    (4, 2, 3)
    """
    per_process = math.ceil(num_train_cases / max(1, world_size))
    return math.ceil(per_process / cfg.batch_size)


def build_loaders(train_files: list[dict], val_files: list[dict], cfg: CourseConfig,
                  progress: bool = False, rank: int = 0, world_size: int = 1) -> tuple[Any, Any, Any]:
    """CacheDatasets and loaders for training and validation; returns (train_loader, val_loader, train_tf).

    ``cfg.loader`` picks MONAI's ``ThreadDataLoader`` (no worker processes; fastest for cached
    data on few cores) or ``DataLoader`` with ``cfg.num_workers`` processes. With
    ``world_size > 1`` (distributed training) this process caches and loads only its own
    part of the cases (``partition_dataset``: training cases shuffled once with ``cfg.seed``
    and padded to equal parts, so that every process takes the same number of steps;
    validation cases split without repeats, so that the gathered mean counts each once).
    """
    if world_size > 1:
        if len(val_files) < world_size:   # a process without a case would leave the others waiting
            raise ConfigError(None, f"{len(val_files)} validation case(s) for {world_size} processes: each "
                                    "process needs at least one (raise val_count or use fewer processes)")
        train_files = partition_dataset(train_files, num_partitions=world_size, shuffle=True, seed=cfg.seed,
                                        even_divisible=True)[rank]
        val_files = partition_dataset(val_files, num_partitions=world_size, shuffle=False)[rank]
    train_tf = train_transforms(cfg)
    cache_workers = max(1, min(cfg.num_workers, os.cpu_count() or 1))
    train_ds = CacheDataset(train_files, train_tf, cache_rate=cfg.cache_rate,
                            num_workers=cache_workers, progress=progress)
    val_ds = CacheDataset(val_files, val_transforms(cfg), cache_rate=cfg.cache_rate,
                          num_workers=cache_workers, progress=progress)
    if cfg.loader == "thread":
        train_loader = ThreadDataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
        val_loader = ThreadDataLoader(val_ds, batch_size=1, num_workers=0)
    else:
        train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True,
                                  num_workers=cfg.num_workers)
        val_loader = DataLoader(val_ds, batch_size=1, num_workers=cfg.num_workers)
    return train_loader, val_loader, train_tf


def make_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable,
                    scaler: torch.amp.GradScaler, device: torch.device,
                    use_amp: bool = False) -> Callable[[dict], float]:
    """One optimisation step on a batch dict (``image``, ``label``); returns the loss value.

    The training loop and the benchmarks call this same function, so what is measured is
    what the course runs.
    """
    def step(batch: dict) -> float:
        inputs, labels = batch["image"].to(device), batch["label"].to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=use_amp):
            loss = loss_fn(model(inputs), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.item()

    return step


def validate_dice(model: torch.nn.Module, loader: Any, cfg: CourseConfig, device: torch.device) -> float:
    """Mean Dice over the validation volumes (sliding window, argmax, spleen channel).

    Post-processing runs where the labels are (CPU for the course's loaders, the GPU when the
    data are cached there), so nothing is copied back and forth. In distributed training
    every process scores its own cases and ``DiceMetric`` (a MONAI ``Cumulative``) gathers the
    per-case values of all processes, so each returns the mean over all validation cases.
    """
    metric = build_dice_metric()
    post_pred = AsDiscrete(argmax=True, to_onehot=2)
    post_label = AsDiscrete(to_onehot=2)
    model.eval()
    # Every DataLoader iterator draws its seed from torch's global generator: validating inside
    # fork_rng leaves the training's random stream exactly where it was, so a validation more
    # or less (the one after the last epoch, a resumed run) never changes what training does.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        for batch in loader:
            labels = batch["label"]
            logits = infer_logits(model, batch["image"], cfg, device).float().to(labels.device)
            preds = [post_pred(p) for p in decollate_batch(logits)]
            metric(y_pred=preds, y=[post_label(lab) for lab in decollate_batch(labels)])
    value = float(metric.aggregate().item())   # in a process group, MONAI gathers every process's cases
    metric.reset()
    return value


def _distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group (of any size)."""
    return dist.is_available() and dist.is_initialized()


def _every(seconds: float) -> Callable[[], bool]:
    """A clock that answers True at most once per ``seconds`` (the first time, always)."""
    last = [-math.inf]

    def due() -> bool:
        now = time.monotonic()
        if now - last[0] < seconds:
            return False
        last[0] = now
        return True

    return due


def training_state(epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, history: TrainingHistory, train_tf: Any,
                   cfg: CourseConfig, scheduler: Any = None,
                   rng_states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What ``checkpoint.pt`` holds after ``epoch``: everything an exact resume needs.

    MONAI's tutorial keys (``model_state_dict``, ``optimizer_state_dict``, ``train_loss``,
    ``val_dice``, ``best_metric``, ``best_metric_epoch``), the mixed-precision ``GradScaler``
    state (its loss scale and growth tracker; empty without AMP), the learning-rate
    scheduler's state, the history, every random state
    (:func:`~spleen_helpers.engine.checkpoint.capture_rng_state`; in distributed training
    ``rng_states`` holds every process's, and ``world_size`` how many there were), the
    configuration and versions.

    >>> import torch
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> from spleen_helpers.engine.model import build_optimizer, build_unet
    >>> cfg = CourseConfig.synthetic(channels=(4, 8, 16), strides=(2, 2))
    >>> net = build_unet(cfg)
    >>> state = training_state(3, net, build_optimizer(net, cfg), torch.amp.GradScaler("cpu", enabled=False),
    ...                        TrainingHistory(), None, cfg)
    >>> state["epoch"], state["scaler_state_dict"], state["world_size"]
    (3, {}, 1)
    """
    states = rng_states if rng_states is not None else [capture_rng_state(train_tf)]
    return {
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "scaler_state_dict": scaler.state_dict(),
        "scheduler_state_dict": {} if scheduler is None else scheduler.state_dict(),
        "train_loss": list(history.train_loss),
        "val_dice": list(history.val_dice),
        "best_metric": history.best_metric,
        "best_metric_epoch": history.best_metric_epoch,
        "history": history.to_dict(),
        "rng_state": states[0],
        "world_size": len(states),
        **({"rng_states": states} if len(states) > 1 else {}),
        "config": cfg.to_dict(),
        "model_signature": cfg.model_signature(),
        "versions": {"torch": str(torch.__version__), "monai": str(monai.__version__)},
    }


def restore_training_state(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                           scaler: torch.amp.GradScaler, train_tf: Any, scheduler: Any = None,
                           rank: int = 0) -> tuple[TrainingHistory, int]:
    """Load a :func:`training_state` back into fresh objects; return (history, last completed epoch).

    The ``GradScaler`` state is restored when both the checkpoint and this run use mixed
    precision; a run that switches AMP on or off at resume starts from a fresh scaler. In
    distributed training each process takes the random states of its ``rank``.

    >>> import torch
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> from spleen_helpers.engine.model import build_optimizer, build_unet
    >>> cfg = CourseConfig.synthetic(channels=(4, 8, 16), strides=(2, 2))
    >>> net = build_unet(cfg); opt = build_optimizer(net, cfg)
    >>> scaler = torch.amp.GradScaler("cpu", enabled=False)
    >>> saved = training_state(3, net, opt, scaler, TrainingHistory(), None, cfg)
    >>> restore_training_state(saved, net, opt, scaler, None)[1]
    3
    """
    model.load_state_dict(state["model_state_dict"])
    optimizer.load_state_dict(state["optimizer_state_dict"])
    if scaler.is_enabled() and state.get("scaler_state_dict"):
        scaler.load_state_dict(state["scaler_state_dict"])
    if scheduler is not None and state.get("scheduler_state_dict"):
        scheduler.load_state_dict(state["scheduler_state_dict"])
    restore_rng_state(state["rng_states"][rank] if "rng_states" in state else state["rng_state"], train_tf)
    return TrainingHistory.from_dict(state["history"]), int(state["epoch"])


def _sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    """``values`` added up over all processes (float64; on the GPU for NCCL)."""
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def _process_device(cfg: CourseConfig, world: int) -> torch.device:
    """The device of this process: ``cfg.device``, or in distributed training the GPU of its local rank."""
    device = resolve_device(cfg.device)
    if _distributed() and device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(None, f"process {local} of this machine has no GPU: "
                                    f"{torch.cuda.device_count()} CUDA device(s) for {world} processes")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return device


def _checkpoint_state(state_path: Path, resume: bool, overwrite: bool, cfg: CourseConfig,
                      world: int, device: torch.device, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: a new run); a one-line error where there is none to use."""
    if resume and state_path.exists():
        state = load_checkpoint(state_path, map_location=device)
        check_model_signature(state.get("model_signature", {}), cfg, state_path)
        written_by = int(state.get("world_size", 1))
        if written_by != world:
            raise CheckpointError(state_path, f"was written by a run of {written_by} process(es), this one "
                                              f"has {world}: resume it with --nproc {written_by} for an "
                                              "exact continuation")
        return state
    if state_path.exists() and not overwrite:
        raise ConfigError(state_path, "a run already exists here; resume it (resume=True / --resume), "
                                      "or choose another run directory, or overwrite=True")
    if resume:
        log(f"no checkpoint in {state_path.parent}: starting a new run")
    return None


@dataclass
class _Run:
    """What every epoch of :func:`train` works with, set up once before the first."""

    cfg: CourseConfig
    layout: RunLayout
    device: torch.device
    world: int
    main: bool  # rank 0: the process that logs and writes files
    train_loader: Any
    val_loader: Any
    train_tf: Any
    net: torch.nn.Module
    model: torch.nn.Module  # ``net``, or ``net`` in DistributedDataParallel within a process group
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    step: Callable[[dict], float]


def _turned_cases(data_dir: str | os.PathLike, cfg: CourseConfig, state: dict[str, Any] | None,
                  keep_headers: bool, say: Callable[[str], None]) -> CourseConfig:
    """``cfg`` with the cases whose headers are turned back (``turned_cases``); says the side survey."""
    sides = side_survey(validate_dataset(data_dir, check_all=True, log=lambda _line: None))
    if state is not None:   # the decision the run started with, whatever the switch says now
        turned = tuple(state.get("config", {}).get("turned_cases", ()))
    else:
        turned = () if keep_headers else sides.named("turned")
    cfg = cfg.replace(turned_cases=turned)
    say(sides.line(corrected=bool(turned)) + (" (as the checkpoint recorded)" if state is not None else ""))
    return cfg


def _set_up(cfg: CourseConfig, layout: RunLayout, train_files: list[dict], val_files: list[dict],
            device: torch.device, rank: int, world: int) -> _Run:
    """Seed, loaders, network (in DDP within a process group), optimiser, scheduler, scaler, step."""
    set_determinism(seed=cfg.seed + rank)  # rank 0's weights reach every process (DDP broadcasts them)
    train_loader, val_loader, train_tf = build_loaders(train_files, val_files, cfg, progress=False,
                                                       rank=rank, world_size=world)
    net = build_unet(cfg).to(device)
    model: torch.nn.Module = net
    if _distributed():
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp)
    loss_fn = build_loss(cfg)
    step = make_train_step(model, optimizer, loss_fn, scaler, device, cfg.amp)
    return _Run(cfg=cfg, layout=layout, device=device, world=world, main=rank == 0,
                train_loader=train_loader, val_loader=val_loader, train_tf=train_tf, net=net, model=model,
                optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=step)


def _resumed(run: _Run, state: dict[str, Any] | None, rank: int,
             say: Callable[[str], None]) -> tuple[TrainingHistory, int]:
    """The history so far and the first epoch to run: restored from ``state``, or a new run's."""
    if state is None:
        return TrainingHistory(), 1
    history, last_epoch = restore_training_state(state, run.net, run.optimizer, run.scaler, run.train_tf,
                                                 run.scheduler, rank)
    say(f"resumed from {run.layout.checkpoint} at epoch {last_epoch} ({history.describe_best()})")
    return history, last_epoch + 1


def _train_epoch(run: _Run, epoch: int, history: TrainingHistory, bar: Any,
                 bar_due: Callable[[], bool]) -> float:
    """One pass over the training loader, then the scheduler's step; the mean loss of all steps."""
    run.model.train()
    epoch_loss, steps = 0.0, 0
    for batch in run.train_loader:
        loss = run.step(batch)
        epoch_loss += loss
        steps += 1
        if bar_due():  # the current loss, about once a second (a long epoch shows its steps)
            bar.set_postfix_str(f"epoch {epoch} step {steps}/{len(run.train_loader)} loss {loss:.4f}"
                                f"{history.describe_last(', ')}")
    if _distributed():  # the mean loss of all processes' steps
        epoch_loss, steps = _sum_over_processes([epoch_loss, steps], run.device)
    epoch_loss /= max(steps, 1)
    run.scheduler.step()
    return epoch_loss


def _validate(run: _Run, epoch: int, history: TrainingHistory) -> str:
    """Validate, record the Dice, save the best model on improvement; what the epoch's line adds."""
    if _distributed():  # every process validates the network rank 0 saves
        for buffer in run.net.buffers():
            dist.broadcast(buffer, src=0)
    dice = validate_dice(run.net, run.val_loader, run.cfg, run.device)
    improved = history.record_validation(epoch, dice)
    message = f" val Dice {dice:.4f}"
    if improved and run.main:
        save_checkpoint({"model_state_dict": run.net.state_dict(), "config": run.cfg.to_dict(),
                         "epoch": epoch, "best_metric": dice}, run.layout.best_model)
        message += " (new best, saved)"
    return message


def _write_checkpoint(run: _Run, epoch: int, history: TrainingHistory, validated: bool) -> None:
    """Every process's random states into rank 0's checkpoint; the history (and plot) beside it."""
    rng_states: list[Any] = [capture_rng_state(run.train_tf)]
    if _distributed():
        gathered: list[Any] = [None] * run.world
        dist.all_gather_object(gathered, rng_states[0])
        rng_states = gathered
    if run.main:
        save_checkpoint(training_state(epoch, run.net, run.optimizer, run.scaler, history, run.train_tf,
                                       run.cfg, run.scheduler, rng_states), run.layout.checkpoint)
        history.save(run.layout.root)
        if validated:  # the plot changes little in between
            plot_learning_curves(history, run.layout.learning_curves)


def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike, cfg: CourseConfig | None = None, *,
          resume: bool = False, overwrite: bool = False, progress: bool = True,
          keep_headers: bool = False, log: Callable[[str], None] = print, **overrides: Any) -> TrainResult:
    """Train (or resume training) the spleen UNet on ``data_dir``; write everything to ``run_dir``.

    ``cfg`` defaults to :func:`config_for(data_dir) <spleen_helpers.ground.settings.config_for>`;
    ``overrides`` replace single settings (``max_epochs=10``). With ``resume=True`` training
    continues from ``run_dir/checkpoint.pt`` up to ``cfg.max_epochs`` (raise it to extend a
    finished run). Without it, an existing run is an error unless ``overwrite=True``.

    Validation runs every ``cfg.val_interval`` epochs and after the last epoch, so every
    finished run has a best model. ``progress`` shows one bar (epochs, current loss, last
    validation Dice) instead of a log line per epoch; the per-epoch record is ``history.csv``.

    The data checks (:func:`~spleen_helpers.data.dataset.validate_dataset`) say on which side of the
    body each case's spleen lies. Cases that look turned (an LPS header read as RAS:
    :mod:`spleen_helpers.data.anatomy`) are read with their header turned back, image and label
    alike, unless ``keep_headers``; the decision is ``cfg.turned_cases``, recorded in
    ``config.json`` and every checkpoint, and a resumed run takes it from its checkpoint (one
    that recorded none keeps the files' headers).

    Called in every process of a ``torch.distributed`` process group (``spleen-course train
    --nproc N``, or ``torchrun`` with :mod:`spleen_helpers.engine.launch`), it trains with
    ``DistributedDataParallel``: each process its own part of the cases, validation gathered
    over all of them; only rank 0 logs and writes files, and the checkpoint holds the random
    states of every process, so a resumed run (with as many processes) continues exactly.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    cfg = (cfg or config_for(data_dir))
    if overrides:
        cfg = cfg.replace(**overrides)
    rank, world = process_group()
    main = rank == 0
    say = log if main else (lambda _line: None)
    device = _process_device(cfg, world)
    if cfg.amp and device.type != "cuda":
        raise ConfigError(None, f"amp (mixed precision) needs a CUDA device, but this run is on "
                                f"{device.type}: leave amp off (no --amp) or use --device cuda")
    state = _checkpoint_state(layout.checkpoint, resume, overwrite, cfg, world, device, say)
    cfg = _turned_cases(data_dir, cfg, state, keep_headers, say)
    train_files, val_files = split_datalist(load_datalist(data_dir), cfg)
    run = _set_up(cfg, layout, train_files, val_files, device, rank, world)
    history, start_epoch = _resumed(run, state, rank, say)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cfg.to_dict() | {"data_dir": str(Path(data_dir).resolve()), "world_size": world},
                          layout.config_json)
    processes = f", {world} process{'es' if world > 1 else ''} ({dist.get_backend()})" if _distributed() else ""
    say(f"training on {device}{processes} ({len(train_files)} train / {len(val_files)} val cases, "
        f"{len(run.train_loader)} steps per epoch), epochs {start_epoch}..{cfg.max_epochs}, run dir {run_dir}")

    # One bar for the whole run, fed by hand and never given the loader: tqdm.auto's async
    # variant calls iter() on what it wraps, and each DataLoader iterator draws a seed from
    # torch's generator, so a wrapped loader would train differently with and without bars.
    with tqdm(total=cfg.max_epochs, initial=start_epoch - 1, desc="training", unit="epoch",
              disable=not (progress and main)) as bar:
        bar_due = _every(1.0)
        for epoch in range(start_epoch, cfg.max_epochs + 1):
            t0 = time.perf_counter()
            epoch_loss = _train_epoch(run, epoch, history, bar, bar_due)
            message = f"epoch {epoch}/{cfg.max_epochs} loss {epoch_loss:.4f}"
            validating = epoch % cfg.val_interval == 0 or epoch == cfg.max_epochs
            if validating:
                message += _validate(run, epoch, history)
            history.record_epoch(epoch, epoch_loss, time.perf_counter() - t0)
            _write_checkpoint(run, epoch, history, validated=validating)
            bar.set_postfix_str(f"epoch {epoch} loss {epoch_loss:.4f}{history.describe_last(', ')}",
                                refresh=False)
            bar.update(1)
            if not (progress and main):
                say(message)
    if _distributed():
        dist.barrier()  # rank 0's files are complete before any process returns
    epochs_run = max(0, cfg.max_epochs - start_epoch + 1)
    say(f"done: {history.describe_best()}; {history.wall_seconds:.1f} s of training in total")
    return TrainResult(run_dir=run_dir, config=cfg, history=history, epochs_run=epochs_run)
