"""Benchmark 5: MONAI's fast-training recipe on a GPU, AMP versus fp32.

The recipe (MONAI's ``fast_training_tutorial``): ``CacheDataset`` whose cached, deterministic
part ends with ``ToDeviced`` to the GPU (so the random crops run on GPU tensors and nothing is
copied per step), ``ThreadDataLoader(num_workers=0)``, and mixed precision
(``torch.autocast`` + ``GradScaler``) against full fp32. For each precision, on the same data
and seed: seconds per epoch (training only, CUDA synchronised), time to reach a validation
Dice threshold (training and validation time, cache excluded) and the epoch it happened,
best Dice, peak GPU memory.

Without CUDA it prints ``skipped: no CUDA`` and exits 0: it never runs in CI.
``--device cpu`` runs the same code on the CPU (AMP only acts on CUDA) to check the script
itself; those figures are not the recipe's and are never written to a file.

Usage::

    python -m benchmarks.gpu_recipe                          # prints the table
    python -m benchmarks.gpu_recipe --output BENCHMARKS.md   # and records it
    python -m benchmarks.gpu_recipe --profile real --cases 16 --max-epochs 100
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/gpu_recipe.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks.common import Context, Result, fmt, machine_info, now_utc  # noqa: E402

__all__ = ["NAME", "TITLE", "DESCRIPTION", "SKIP_MESSAGE", "cuda_available", "recipe_transforms",
           "train_one", "measure", "run", "main"]

NAME = "gpu"
TITLE = "5. GPU fast-training recipe: AMP vs fp32"
SKIP_MESSAGE = "skipped: no CUDA"
DESCRIPTION = """
MONAI's fast-training recipe: `CacheDataset` with the deterministic part cached on the GPU
(`ToDeviced` before the random crop), `ThreadDataLoader(num_workers=0)`, AMP (`torch.autocast` +
`GradScaler`) versus fp32, same data and seed. Seconds per training epoch (CUDA synchronised;
first epoch apart), time and epoch to reach the validation Dice threshold (training plus
validation, cache excluded), best Dice, peak GPU memory. Runs only where CUDA is available
(`python -m benchmarks.gpu_recipe`); never in CI.
"""


def cuda_available() -> bool:
    """True when torch sees a CUDA device (``CUDA_VISIBLE_DEVICES=""`` hides them)."""
    import torch

    return bool(torch.cuda.is_available())


def recipe_transforms(cfg: Any, device: Any) -> tuple[Any, Any]:
    """Training and validation pipelines with ``ToDeviced`` inserted where the cache ends.

    Training: the course's pipeline with ``ToDeviced`` just before the first random transform,
    so ``CacheDataset`` caches GPU tensors and the random crops run on the GPU. Validation:
    the course's pipeline followed by ``ToDeviced`` (all of it cached).
    """
    from monai.transforms import Compose, EnsureTyped, Randomizable, ToDeviced

    from spleen_helpers.engine.transforms import train_transforms, val_transforms

    keys = ["image", "label"]
    steps = list(train_transforms(cfg).transforms)
    first_random = next(i for i, t in enumerate(steps) if isinstance(t, Randomizable))
    steps.insert(first_random, ToDeviced(keys=keys, device=device))
    val = list(val_transforms(cfg).transforms) + [EnsureTyped(keys=keys, track_meta=False),
                                                  ToDeviced(keys=keys, device=device)]
    return Compose(steps), Compose(val)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one(cfg: Any, train_files: list[dict], val_files: list[dict], device: Any, amp: bool,
              threshold: float, log: Any = print) -> dict[str, Any]:
    """Train with the recipe for ``cfg.max_epochs`` epochs (validation every ``val_interval``)."""
    import torch
    from monai.data import CacheDataset, ThreadDataLoader
    from monai.utils import set_determinism

    from spleen_helpers.engine.model import build_loss, build_optimizer, build_unet
    from spleen_helpers.engine.loop import make_train_step, validate_dice

    set_determinism(seed=cfg.seed)
    train_tf, val_tf = recipe_transforms(cfg, device)
    t0 = time.perf_counter()
    train_ds = CacheDataset(train_files, train_tf, cache_rate=1.0, num_workers=4, progress=False)
    val_ds = CacheDataset(val_files, val_tf, cache_rate=1.0, num_workers=4, progress=False)
    cache_s = time.perf_counter() - t0
    train_loader = ThreadDataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
    val_loader = ThreadDataLoader(val_ds, batch_size=1, num_workers=0)

    model = build_unet(cfg).to(device)
    optimizer = build_optimizer(model, cfg)
    loss_fn = build_loss(cfg)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp and cuda)
    step = make_train_step(model, optimizer, loss_fn, scaler, device, use_amp=amp and cuda)
    infer_cfg = cfg.replace(amp=amp)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    epoch_s: list[float] = []
    elapsed = 0.0
    best, best_epoch, reached_s, reached_epoch = -1.0, 0, None, None
    for epoch in range(1, cfg.max_epochs + 1):
        _sync(device)
        e0 = time.perf_counter()
        model.train()
        for batch in train_loader:
            step(batch)
        _sync(device)
        train_s = time.perf_counter() - e0
        epoch_s.append(train_s)
        elapsed += train_s
        if epoch % cfg.val_interval == 0:
            v0 = time.perf_counter()
            dice = validate_dice(model, val_loader, infer_cfg, device)
            _sync(device)
            elapsed += time.perf_counter() - v0
            if dice > best:
                best, best_epoch = dice, epoch
            if reached_s is None and dice >= threshold:
                reached_s, reached_epoch = elapsed, epoch
            log(f"  {'amp ' if amp else 'fp32'} epoch {epoch}: train {train_s:.2f} s, val Dice {dice:.4f}")
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else float("nan")
    later = epoch_s[1:] or epoch_s
    return {"cache_s": cache_s, "first_epoch_s": epoch_s[0], "epoch_s": sum(later) / len(later),
            "total_s": elapsed, "to_threshold_s": reached_s, "to_threshold_epoch": reached_epoch,
            "best_dice": best, "best_epoch": best_epoch, "peak_gpu_mb": peak_mb, "epochs": len(epoch_s)}


def _data(ctx: Context, profile: str, cases: int | None) -> tuple[Any, Path]:
    """The configuration and synthetic data set of a profile.

    ``synthetic``: the course's synthetic settings and default phantom. ``real``: the
    real-data settings (:class:`CourseConfig`) on larger phantoms at CT-like spacing.
    """
    from spleen_helpers.ground.settings import CourseConfig
    from spleen_helpers.data.phantom import PhantomSpec, ensure_synthetic_dataset

    if profile == "real":
        cfg = CourseConfig(val_count=max(1, (cases or 16) // 4))
        spec = PhantomSpec(shape=(256, 256, 96), spacing=(1.6, 1.6, 2.5))
        data = ensure_synthetic_dataset(ctx.work_dir / "gpu-data-real", num_cases=cases or 16, spec=spec)
    else:
        cfg = CourseConfig.synthetic()
        if cases:
            cfg = cfg.replace(val_count=max(1, cases // 4))
        data = ensure_synthetic_dataset(ctx.work_dir / "gpu-data", num_cases=cases or 12)
    return cfg, data


def measure(ctx: Context, device_name: str = "cuda", profile: str = "synthetic", cases: int | None = None,
            max_epochs: int | None = None, threshold: float = 0.9, val_interval: int = 1) -> Result:
    """Run the recipe with fp32 and with AMP; one row per precision."""
    import torch

    from spleen_helpers.data.dataset import load_datalist, split_datalist

    device = torch.device(device_name)
    cfg, data = _data(ctx, profile, cases)
    cfg = cfg.replace(device=device_name, val_interval=val_interval,
                      **({"max_epochs": max_epochs} if max_epochs else {}))
    train_files, val_files = split_datalist(load_datalist(data), cfg)
    ctx.log(f"GPU recipe on {device} ({profile} profile): {len(train_files)} train / {len(val_files)} val cases, "
            f"{cfg.max_epochs} epochs, Dice threshold {threshold}")
    rows = {}
    for amp in (False, True):
        rows["amp" if amp else "fp32"] = train_one(cfg, train_files, val_files, device, amp, threshold, ctx.log)
    result = Result(columns=["precision", "profile", "s/epoch", "first epoch s", "cache s",
                             f"time to Dice ≥ {threshold} s", "epoch reached", "best Dice", "peak GPU MiB",
                             "epochs"], key_columns=("precision", "profile"))
    for name, r in rows.items():
        result.add(precision=name, profile=profile, **{
            "s/epoch": fmt(r["epoch_s"], 3), "first epoch s": fmt(r["first_epoch_s"], 2), "cache s": fmt(r["cache_s"], 1),
            f"time to Dice ≥ {threshold} s": fmt(r["to_threshold_s"], 1) if r["to_threshold_s"] is not None
            else f"not reached in {r['epochs']} epochs",
            "epoch reached": fmt(r["to_threshold_epoch"]) if r["to_threshold_epoch"] else "-",
            "best Dice": f"{r['best_dice']:.4f} (epoch {r['best_epoch']})", "peak GPU MiB": fmt(r["peak_gpu_mb"], 0),
            "epochs": r["epochs"]})
    speed = rows["fp32"]["epoch_s"] / rows["amp"]["epoch_s"]
    result.notes.append(f"AMP takes {1 / speed:.2f}x fp32's time per epoch; "
                        f"{len(train_files)} train / {len(val_files)} val cases, batch {cfg.batch_size}x"
                        f"{cfg.num_samples} patches {'x'.join(map(str, cfg.patch_size))}, validation every "
                        f"{cfg.val_interval} epoch(s), roi {'x'.join(map(str, cfg.roi_size))}")
    result.data.update(rows=rows)
    return result


def run(ctx: Context) -> Result | None:
    """The ``bench`` entry point's view: None (skipped) without CUDA or in quick mode."""
    if ctx.quick or not cuda_available():
        ctx.log(f"gpu: {SKIP_MESSAGE if not cuda_available() else 'skipped in quick mode'}")
        return None
    return measure(ctx)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=None, help="append/replace the rows in this BENCHMARKS.md")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to check the script only")
    p.add_argument("--profile", choices=["synthetic", "real"], default="synthetic",
                   help="synthetic: course's synthetic settings; real: real-data settings on larger phantoms")
    p.add_argument("--cases", type=int, default=None, help="number of synthetic cases (default 12 / 16)")
    p.add_argument("--max-epochs", type=int, default=None, help="default: the profile's max_epochs")
    p.add_argument("--threshold", type=float, default=0.9, help="validation Dice to reach (default 0.9)")
    p.add_argument("--val-interval", type=int, default=1, help="validate every N epochs (default 1)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line; exits 0 with ``skipped: no CUDA`` where there is no GPU."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    on_cpu = args.device == "cpu"
    if not on_cpu and not cuda_available():
        print(f"{SKIP_MESSAGE} (torch {__import__('torch').__version__} sees no GPU); nothing measured")
        return 0
    ctx = Context(keep=args.keep)
    try:
        result = measure(ctx, args.device, args.profile, args.cases, args.max_epochs, args.threshold,
                         args.val_interval)
    finally:
        ctx.cleanup()
    from .report import render_section, write_results

    context = {"date": now_utc(), **machine_info(),
               "command": shlex.join(["python", "-m", "benchmarks.gpu_recipe", *argv])}
    print(render_section([], result, context))
    if args.output is not None:
        if on_cpu:
            print("not written: --device cpu only checks the script; the recipe's figures need a GPU")
        else:
            from . import MODULES

            write_results(args.output, {NAME: (sys.modules[__name__], result)}, context, MODULES)
            print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
