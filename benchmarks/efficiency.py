"""Benchmark 2: how close the real training loop comes to the bare model step.

Efficiency = samples per second of the real loop (dataset → transforms → loader → model step)
divided by samples per second of the same model step on batches already in memory (same
model, same batch shape, same number of steps). A sample is one training patch.

Loaders compared, each with the course's training transforms and synthetic settings (read
from :meth:`CourseConfig.synthetic` at run time):

* the course's default, built by :func:`spleen_helpers.engine.loop.build_loaders` itself;
* ``Dataset`` + ``DataLoader`` with 0 and 2 worker processes, ``Dataset`` + ``ThreadDataLoader``;
* ``CacheDataset`` + ``DataLoader`` with 0 and 2 workers, ``CacheDataset`` + ``ThreadDataLoader``
  (a variant identical to the default is not run twice).

On a noisy machine a ratio only holds if both sides are measured close together: the
loaders take turns, one epoch each, round after round, and every loader epoch is followed by
a bare epoch over the same number of batches; a loader's ratio is against its own neighbours.
Setup (building the data set and its cache) is reported apart, and folded into a
whole-training figure over ``max_epochs``, because a cache is paid once per training run.

Example:
    >>> from benchmarks.common import Context
    >>> result = run(Context(quick=True))                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .common import Context, Result, fmt, verdict

__all__ = ["NAME", "TITLE", "DESCRIPTION", "TARGET_RATIO", "LoaderSpec", "LOADERS", "run"]

NAME = "efficiency"
TITLE = "2. Training-loop efficiency"
TARGET_RATIO = 0.90
DESCRIPTION = f"""
Samples (training patches) per second of the real training loop (data set, transforms, loader,
model step) divided by samples per second of the bare forward + backward + optimiser step of the
same model on the same batches already in memory; same batch shape, same number of steps.
Loaders take turns one epoch at a time, each epoch followed by a bare epoch, so a ratio compares
neighbours. `setup s` is building the data set (and its cache) once; `whole run samples/s`
folds it into `max_epochs` epochs of the course's synthetic default.
Target: ratio ≥ {TARGET_RATIO:.2f}; the course's default loader should be the best one.
"""


@dataclass(frozen=True)
class LoaderSpec:
    """One way to feed the training loop: data set class, loader class, worker processes."""

    dataset: str   # "Dataset" or "CacheDataset"
    loader: str    # "DataLoader" or "ThreadDataLoader"
    workers: int

    @property
    def label(self) -> str:
        return f"{self.dataset} + {self.loader}(num_workers={self.workers})"


LOADERS = [
    LoaderSpec("Dataset", "DataLoader", 0),
    LoaderSpec("Dataset", "DataLoader", 2),
    LoaderSpec("Dataset", "ThreadDataLoader", 0),
    LoaderSpec("CacheDataset", "DataLoader", 0),
    LoaderSpec("CacheDataset", "DataLoader", 2),
    LoaderSpec("CacheDataset", "ThreadDataLoader", 0),
]


def _default_spec(cfg: Any) -> LoaderSpec:
    """The LoaderSpec that :func:`build_loaders` builds for ``cfg`` (full cache only)."""
    dataset = "CacheDataset" if cfg.cache_rate >= 1.0 else f"CacheDataset(cache_rate={cfg.cache_rate})"
    if cfg.loader == "thread":
        return LoaderSpec(dataset, "ThreadDataLoader", 0)
    return LoaderSpec(dataset, "DataLoader", cfg.num_workers)


def _build(spec: LoaderSpec, files: list[dict], cfg: Any) -> Any:
    from monai.data import CacheDataset, DataLoader, Dataset, ThreadDataLoader

    from spleen_helpers.engine.transforms import train_transforms

    tf = train_transforms(cfg)
    if spec.dataset == "Dataset":
        ds = Dataset(files, tf)
    else:
        ds = CacheDataset(files, tf, cache_rate=1.0, num_workers=1, progress=False)
    if spec.loader == "ThreadDataLoader":
        return ThreadDataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=spec.workers)
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, num_workers=spec.workers)


def _make_step(cfg: Any) -> tuple[Callable[[dict], float], Any]:
    """The model step of :func:`spleen_helpers.engine.loop.train` (the same function it calls)."""
    import torch

    from spleen_helpers.engine.model import build_loss, build_optimizer, build_unet, resolve_device
    from spleen_helpers.engine.loop import make_train_step

    device = resolve_device(cfg.device)
    model = build_unet(cfg).to(device)
    model.train()
    optimizer = build_optimizer(model, cfg)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    loss_fn = build_loss(cfg)

    step = make_train_step(model, optimizer, loss_fn, scaler, device, use_amp)
    return step, device


def _timed(batches: Callable[[], Iterable[dict]], epochs: int, step: Callable[[dict], float]) -> tuple[float, int, int]:
    """Run ``epochs`` passes over ``batches()``; return (seconds, samples, steps)."""
    samples = steps = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for batch in batches():
            step(batch)
            samples += int(batch["image"].shape[0])
            steps += 1
    return time.perf_counter() - t0, samples, steps


def run(ctx: Context) -> Result:
    """Measure every loader against the bare step; say which is best and whether it is the default."""
    import torch
    from monai.utils import set_determinism

    from spleen_helpers.data.dataset import load_datalist, split_datalist
    from spleen_helpers.engine.loop import build_loaders

    cfg = ctx.synthetic_config()
    data_dir = ctx.data_dir()
    train_files, val_files = split_datalist(load_datalist(data_dir), cfg)
    rounds = 1 if ctx.quick else 4
    step, device = _make_step(cfg)
    default = _default_spec(cfg)
    ctx.log(f"efficiency: {len(train_files)} training cases, batch_size {cfg.batch_size} x num_samples "
            f"{cfg.num_samples}, {rounds} round(s) of one epoch per loader; default {default.label}")

    # The course's own loader builder gives the default variant and, from its first epoch,
    # the batches the bare step replays (already on the device).
    set_determinism(seed=cfg.seed)
    t0 = time.perf_counter()
    default_loader, _, _ = build_loaders(train_files, val_files[:1], cfg)  # setup: + one val volume
    built: list[dict[str, Any]] = [dict(label=f"course default: {default.label}", spec=default,
                                        loader=default_loader, setup=time.perf_counter() - t0)]
    prebuilt = [{"image": b["image"].to(device), "label": b["label"].to(device)} for b in default_loader]
    # quick smoke: the default (in-process) and one loader with worker processes
    for spec in (LOADERS[1:2] if ctx.quick else LOADERS):
        if spec == default:
            continue
        set_determinism(seed=cfg.seed)
        t0 = time.perf_counter()
        loader = _build(spec, train_files, cfg)
        built.append(dict(label=spec.label, spec=spec, loader=loader, setup=time.perf_counter() - t0))
    for b in built:  # warm-up epoch each: first transforms, first allocations; not timed
        _timed(lambda b=b: b["loader"], 1, step)
    _timed(lambda: prebuilt, 1, step)

    # Round robin: every loader's epoch is followed by a bare epoch, round after round, so a
    # change in the machine's load hits all loaders alike and each ratio compares neighbours.
    for b in built:
        b.update(seconds=0.0, samples=0, steps=0, bare_seconds=0.0, bare_samples=0)
    bare_epochs: list[float] = []
    for _ in range(rounds):
        for b in built:
            sec, n, k = _timed(lambda b=b: b["loader"], 1, step)
            b["seconds"] += sec
            b["samples"] += n
            b["steps"] += k
            sec, n, _ = _timed(lambda: prebuilt, 1, step)
            b["bare_seconds"] += sec
            b["bare_samples"] += n
            bare_epochs.append(n / sec)
    rows: list[dict[str, Any]] = []
    for b in built:
        sps, ref = b["samples"] / b["seconds"], b["bare_samples"] / b["bare_seconds"]
        epoch_s, epoch_n = b["seconds"] / rounds, b["samples"] / rounds
        whole = cfg.max_epochs * epoch_n / (b["setup"] + cfg.max_epochs * epoch_s)
        rows.append(dict(label=b["label"], sps=sps, bare=ref, ratio=sps / ref, setup=b["setup"], whole=whole,
                         steps=b["steps"], default=b["spec"] == default))
        ctx.log(f"  {b['label']}: {sps:.2f} samples/s, bare {ref:.2f}, ratio {sps / ref:.3f}, setup {b['setup']:.1f} s")
    del built, default_loader

    # Threads: the bare step with one torch thread against the default count, alternating.
    # (On a busy machine OpenMP threads waiting for a descheduled sibling can cost far more
    # than the second thread gains; this shows whether it happens here.)
    threads = torch.get_num_threads()
    per_threads: dict[int, list[float]] = {}
    if threads > 1 and not ctx.quick:
        try:
            for _ in range(rounds):
                for n in (threads, 1):
                    torch.set_num_threads(n)
                    sec, k, _ = _timed(lambda: prebuilt, 1, step)
                    per_threads.setdefault(n, [0.0, 0.0])
                    per_threads[n][0] += sec
                    per_threads[n][1] += k
        finally:
            torch.set_num_threads(threads)

    result = Result(columns=["loader", "samples/s", "bare samples/s", "ratio", "setup s",
                             "whole run samples/s", "steps", "target"], key_columns=("loader",))
    for r in rows:
        result.add(loader=r["label"], **{
            "samples/s": fmt(r["sps"], 2), "bare samples/s": fmt(r["bare"], 2), "ratio": fmt(r["ratio"], 3),
            "setup s": fmt(r["setup"], 1), "whole run samples/s": fmt(r["whole"], 2), "steps": r["steps"],
            "target": verdict(f"≥ {TARGET_RATIO:.2f}", r["ratio"] >= TARGET_RATIO, ctx.quick)})
    if per_threads:
        sps_n = {n: v[1] / v[0] for n, v in per_threads.items()}
        for n in (threads, 1):
            result.add(loader=f"bare step only, torch threads={n}", **{
                "samples/s": fmt(sps_n[n], 2), "bare samples/s": fmt(sps_n[threads], 2),
                "ratio": fmt(sps_n[n] / sps_n[threads], 3), "setup s": "", "whole run samples/s": "",
                "steps": len(prebuilt) * rounds, "target": ""})
    best = max(rows, key=lambda r: r["whole"])
    best_ratio = max(rows, key=lambda r: r["ratio"])
    dflt = next(r for r in rows if r["default"])
    # The spread of the bare epochs (all the same work) is the noise of this machine right now.
    noise = statistics.pstdev(bare_epochs) / statistics.fmean(bare_epochs) if len(bare_epochs) > 1 else 0.0
    patch = "x".join(str(s) for s in cfg.patch_size)
    result.notes.append(f"{len(prebuilt)} steps per epoch of {cfg.batch_size * cfg.num_samples} patches "
                        f"({patch}), {len(train_files)} training cases, {rounds} timed epoch(s) per loader, "
                        f"max_epochs {cfg.max_epochs}, device {device}, torch threads {torch.get_num_threads()}; "
                        f"bare-step noise (sd/mean of {len(bare_epochs)} bare epochs) {100 * noise:.0f} %")
    result.notes.append(f"course default {default.label}: ratio {dflt['ratio']:.3f}, "
                        f"whole run {dflt['whole']:.2f} samples/s")
    result.notes.append(f"highest ratio: {best_ratio['label']} ({best_ratio['ratio']:.3f}); "
                        f"fastest whole run (setup included): {best['label']} ({best['whole']:.2f} samples/s)")
    if per_threads:
        result.notes.append(f"bare step with 1 torch thread: {sps_n[1] / sps_n[threads]:.2f}x the samples/s "
                            f"of {threads} threads (alternating, {rounds} epochs each)")
    margin = max(2 * noise, 0.03)
    if ctx.quick:
        result.notes.append("quick smoke: tiny data and network, one timed epoch; no recommendation")
    elif best is not dflt and best["whole"] > dflt["whole"] * (1 + margin):
        result.notes.append(f"**{best['label']} beats the course default** by "
                            f"{100 * (best['whole'] / dflt['whole'] - 1):.0f} % over a whole run "
                            f"(more than the {100 * margin:.0f} % margin): make it the default")
    else:
        result.notes.append(f"the course default is the best loader within the {100 * margin:.0f} % margin "
                            f"(twice the bare-step noise, at least 3 %)")
    result.data.update(rows=rows, bare_epochs=bare_epochs, threads=per_threads, noise=noise if math.isfinite(noise) else None)
    return result
