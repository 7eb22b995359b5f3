"""Benchmark 4: peak resident memory of training and of inference, each in a fresh process.

Phases:

* training: :func:`spleen_helpers.engine.loop.train` with the course's synthetic defaults on the
  default synthetic data set, for ``val_interval`` epochs (caching, training steps and one
  validation: every kind of allocation a full run makes);
* inference on one synthetic case with the course's synthetic settings (what notebook 04 does);
* inference on the CT-sized volume with the course's real-data defaults and with the bundle's
  (the fresh-process runs of benchmark 3, reused when it ran in the same invocation).

``RSS after imports`` is the same process right after importing torch, MONAI and the course
package, so ``peak − imports`` is what the phase itself needs.

Example:
    >>> from benchmarks.common import Context
    >>> result = run(Context(quick=True))                                   # doctest: +SKIP
"""

from __future__ import annotations

from .common import Context, Result, fmt, run_phase
from .inference import ct_phases

__all__ = ["NAME", "TITLE", "DESCRIPTION", "run"]

NAME = "memory"
TITLE = "4. Peak memory (resident set size)"
DESCRIPTION = """
Peak resident set size of each phase in its own fresh process (`VmHWM`, MiB): training with
the synthetic defaults for `val_interval` epochs (cache, steps, one validation), inference on one
synthetic case with the synthetic settings, and inference on the CT-sized volume with the
course's real-data defaults and with the bundle's. `RSS after imports` is the same process after
importing torch, MONAI and the course package.
"""


def run(ctx: Context) -> Result:
    """Peak RSS of training and inference phases, each in a fresh process."""
    from spleen_helpers.data.dataset import load_datalist, split_datalist

    cfg = ctx.synthetic_config()
    train_cfg = cfg.replace(max_epochs=cfg.val_interval)
    data_dir = ctx.data_dir()
    result = Result(columns=["phase", "peak RSS MiB", "RSS after imports MiB", "phase MiB", "seconds", "details"],
                    key_columns=("phase",))

    def add(phase: str, p, details: str) -> None:
        base = float(p["rss_after_imports_mb"])
        result.add(phase=phase, **{"peak RSS MiB": fmt(p.peak_rss_mb, 0), "RSS after imports MiB": fmt(base, 0),
                                   "phase MiB": fmt(p.peak_rss_mb - base, 0), "seconds": fmt(p["seconds"], 1),
                                   "details": details})
        ctx.log(f"  {phase}: peak RSS {p.peak_rss_mb:.0f} MiB ({p.peak_rss_mb - base:.0f} MiB over imports)")

    ctx.log("memory: training and inference phases, each in a fresh process")
    p = run_phase(ctx, "train", {"data_dir": str(data_dir), "run_dir": str(ctx.work_dir / "memory-run"),
                                 "cfg": train_cfg.to_dict()})
    train_files, _ = split_datalist(load_datalist(data_dir), cfg)
    add("training (synthetic defaults)", p,
        f"{p['epochs']} epochs, {len(train_files)} cases, cache_rate {cfg.cache_rate:g}, loader {cfg.loader}, "
        f"batch {cfg.batch_size}x{cfg.num_samples} patches {'x'.join(map(str, cfg.patch_size))}, device {p['device']}")
    if not ctx.quick:  # the quick smoke has the CT-sized phases below for this code path
        case = split_datalist(load_datalist(data_dir), cfg)[1][0]["image"]
        p = run_phase(ctx, "infer", {"image": str(case), "cfg": cfg.to_dict(), "seed": 0})
        add("inference, synthetic case (synthetic defaults)", p,
            f"{'x'.join(map(str, p['shape']))} voxels, roi {'x'.join(map(str, cfg.roi_size))}, device {p['device']}")
    runs = ct_phases(ctx, 1 if ctx.quick else 2)
    for name in ("course", "bundle"):
        best = max(runs[name], key=lambda r: r.peak_rss_mb)
        add(f"inference, CT-sized volume ({name} defaults)", best,
            f"{'x'.join(map(str, best['shape']))} voxels, largest of {len(runs[name])} fresh run(s), "
            f"device {best['device']}")
    if ctx.quick:
        result.notes.append("quick smoke: tiny data, network and volume")
    return result
