"""Benchmark 9: the cost of DistributedDataParallel, per training epoch.

The same training (the course's synthetic settings, ``EPOCHS`` epochs) run as a plain process
and through :mod:`spleen_helpers.engine.launch` -- one process in a ``torch.distributed`` group
with the model wrapped in ``DistributedDataParallel`` (gradients all-reduced at every step,
losses and Dice gathered), and, where the machine has two GPUs or at least two cores, two
processes that split the cases. Each run is a fresh process (plain, DDP, DDP, plain, ... so
that drift in the machine's load hits both), on the GPU with ``nccl`` when there is one, else
on the CPU with ``gloo``. Time per epoch is the median over the epochs after the first, from
the run's ``history.json`` (validation epochs included alike).

Target (on one GPU): the DDP path at most 5 % slower per epoch than the plain one.

Example:
    >>> from benchmarks.common import Context
    >>> result = run(Context(quick=True))                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import statistics

from .common import Context, Result, fmt, run_phase, verdict

__all__ = ["NAME", "TITLE", "DESCRIPTION", "EPOCHS", "TARGET_OVERHEAD", "run"]

NAME = "ddp"
TITLE = "9. Distributed training: DistributedDataParallel vs the plain loop"
EPOCHS = 12
TARGET_OVERHEAD = 0.05
DESCRIPTION = f"""
Seconds per training epoch of the synthetic profile ({EPOCHS} epochs, median of epochs 2..{EPOCHS}
from `history.json`), each run a fresh process, alternating: the plain loop, and
`spleen_helpers.engine.launch` with one process (the model in `DistributedDataParallel`, gradients
all-reduced, validation gathered), and with two processes that split the cases (where there are
two GPUs, or two cores for `gloo`). GPU with `nccl` where there is one, else CPU with `gloo`.
Target on one GPU: DDP at most {TARGET_OVERHEAD:.0%} slower per epoch than plain. On a CPU the
figures are reported, not judged.
"""


def _epoch_seconds(run_dir) -> float:
    seconds = json.loads((run_dir / "history.json").read_text())["epoch_seconds"]
    return statistics.median(seconds[1:] or seconds)


def run(ctx: Context) -> Result:
    """Per-epoch seconds of the plain loop and of the DDP path with one (and two) processes."""
    import torch

    cuda = torch.cuda.is_available()
    cfg = ctx.synthetic_config()
    cfg = cfg.replace(max_epochs=2 if ctx.quick else EPOCHS, device="cuda" if cuda else "cpu",
                      val_count=cfg.val_count if ctx.quick else max(cfg.val_count, 2))
    backend = "nccl" if cuda else "gloo"
    data_dir = str(ctx.data_dir())
    # the quick smoke's three cases cannot feed two processes; CI tests that path (test_distributed)
    two = (torch.cuda.device_count() if cuda else (os.cpu_count() or 1)) >= 2 and not ctx.quick
    variants = [("plain loop", 0), (f"DDP, 1 process ({backend})", 1)]
    if two:
        variants.append((f"DDP, 2 processes ({backend})", 2))
    repeats = 1 if ctx.quick else 2
    order = [v for round_ in range(repeats) for v in (variants if round_ % 2 == 0 else variants[::-1])]
    per_epoch: dict[str, list[float]] = {name: [] for name, _ in variants}
    ctx.log(f"ddp: {len(order)} fresh-process runs of {cfg.max_epochs} epochs on {cfg.device}")
    for n, (name, nproc) in enumerate(order):
        run_dir = ctx.work_dir / f"ddp-run-{n}"
        args = {"data_dir": data_dir, "run_dir": str(run_dir), "cfg": cfg.to_dict()}
        if nproc:
            run_phase(ctx, "train_ddp", args | {"nproc": nproc, "backend": backend})
        else:
            run_phase(ctx, "train", args)
        per_epoch[name].append(_epoch_seconds(run_dir))
        ctx.log(f"  {name}: {per_epoch[name][-1]:.3f} s per epoch")
    plain = statistics.mean(per_epoch["plain loop"])
    result = Result(columns=["variant", "s/epoch (runs)", "vs plain", "device", "target"], key_columns=("variant",))
    for name, nproc in variants:
        mean = statistics.mean(per_epoch[name])
        target = ""
        if nproc == 1:
            target = (verdict(f"≤ +{TARGET_OVERHEAD:.0%}", mean <= plain * (1 + TARGET_OVERHEAD), ctx.quick)
                      if cuda else "GPU only (no CUDA here)")
        result.add(variant=name, **{"s/epoch (runs)": f"{fmt(mean, 3)} ({', '.join(fmt(v, 3) for v in per_epoch[name])})",
                                    "vs plain": f"{mean / plain - 1:+.1%}" if nproc else "", "device": cfg.device,
                                    "target": target})
    result.notes.append(f"{cfg.max_epochs} epochs of the synthetic profile per run, {repeats} run(s) per variant, "
                        f"backend {backend}; with N processes each takes 1/N of the cases (half the steps per epoch)")
    if not cuda:
        result.notes.append("no GPU in this run: the 5 % target is for one GPU; re-run `python -m benchmarks --only ddp` "
                            "on a CUDA machine to judge it")
    if ctx.quick:
        result.notes.append("quick smoke: tiny data and network, 2 epochs")
    return result
