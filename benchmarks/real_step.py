"""Time per training epoch of the real-data settings, from timed training steps.

The tutorial's settings (``CourseConfig()``: the UNet at full width, batches of 2 volumes × 4
patches of 96³) on the current device: one warm-up step, then ``--steps`` timed steps of the
course's own step function (:func:`spleen_helpers.engine.loop.make_train_step`) on batches already in
memory. An epoch of the real data set is 16 such steps (32 training volumes, batch size 2);
data loading comes on top (see the efficiency benchmark for its share).

Usage::

    python -m benchmarks.real_step [--steps 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.common import machine_info, now_utc

TRAIN_VOLUMES = 32  # Task09 has 41 labelled volumes; the tutorial keeps 9 for validation


def main(argv: list[str] | None = None) -> int:
    import torch

    from spleen_helpers.ground.settings import CourseConfig
    from spleen_helpers.engine.model import build_loss, build_optimizer, build_unet, resolve_device
    from spleen_helpers.engine.loop import make_train_step

    p = argparse.ArgumentParser(prog="python -m benchmarks.real_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    cfg = CourseConfig(device=args.device)
    device = resolve_device(cfg.device)
    torch.manual_seed(0)
    model = build_unet(cfg).to(device).train()
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    step = make_train_step(model, optimizer, build_loss(cfg), scaler, device)
    n = cfg.batch_size * cfg.num_samples
    batch = {"image": torch.rand(n, 1, *cfg.patch_size, device=device),
             "label": (torch.rand(n, 1, *cfg.patch_size, device=device) > 0.9).float()}
    step(batch)  # warm-up: kernel selection and allocations
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    steps_per_epoch = TRAIN_VOLUMES // cfg.batch_size
    info = machine_info()
    print("| device | s/step | steps/epoch | s/epoch (model steps) | date | machine | CPUs | torch | MONAI | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {device} | {per_step:.2f} | {steps_per_epoch} | {per_step * steps_per_epoch:.0f} | {now_utc()} | "
          f"{info['machine']} | {info['CPUs']} | {info['torch']} | {info['MONAI']} | "
          f"python -m benchmarks.real_step {' '.join(argv or sys.argv[1:])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
