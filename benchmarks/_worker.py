"""One benchmark phase in a fresh process: ``python -m benchmarks._worker PHASE ARGS_JSON OUT_JSON``.

Phases:

* ``train``: :func:`spleen_helpers.train.train` on ``data_dir`` with the configuration ``cfg``
  (a :meth:`CourseConfig.to_dict`) into ``run_dir``;
* ``infer``: :func:`spleen_helpers.evaluate.predict_volume` of one NIfTI ``image`` with ``cfg``,
  with the weights of ``model`` (a checkpoint) or, for timing only, a seeded fresh network.

The report (JSON) holds ``seconds`` (the phase alone, imports and set-up excluded),
``rss_after_imports_mb`` and ``peak_rss_mb`` of this process, and phase-specific values.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _phase_train(args: dict[str, Any]) -> dict[str, Any]:
    from spleen_helpers.config import CourseConfig
    from spleen_helpers.train import train

    cfg = CourseConfig.from_dict(args["cfg"])
    t0 = time.perf_counter()
    result = train(args["data_dir"], args["run_dir"], cfg, overwrite=True, progress=False,
                   log=lambda _msg: None)
    return {"seconds": time.perf_counter() - t0, "epochs": result.epochs_run,
            "best_dice": result.best_metric, "device": cfg.device}


def _phase_infer(args: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from spleen_helpers.config import CourseConfig
    from spleen_helpers.predict import predict_volume
    from spleen_helpers.model import build_unet, resolve_device
    from spleen_helpers.checkpoint import load_model

    cfg = CourseConfig.from_dict(args["cfg"])
    device = resolve_device(cfg.device)
    if args.get("model"):
        model, _ = load_model(args["model"], cfg, device)
    else:
        torch.manual_seed(int(args.get("seed", 0)))
        model = build_unet(cfg).to(device).eval()
    t0 = time.perf_counter()
    mask, _affine = predict_volume(model, args["image"], cfg, device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "shape": list(mask.shape), "mask_voxels": int(np.count_nonzero(mask)),
            "device": str(device)}


PHASES = {"train": _phase_train, "infer": _phase_infer}


def main(argv: list[str] | None = None) -> int:
    """Run one phase and write its JSON report; exit code 0 on success."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in PHASES:
        print(f"usage: python -m benchmarks._worker {{{','.join(PHASES)}}} ARGS_JSON OUT_JSON", file=sys.stderr)
        return 2
    phase, args, out = argv[0], json.loads(argv[1]), Path(argv[2])
    # the imports every phase needs, so that the RSS below is the baseline before any work
    import monai  # noqa: F401
    import torch  # noqa: F401

    import spleen_helpers.evaluate  # noqa: F401
    import spleen_helpers.train  # noqa: F401

    from benchmarks.common import peak_rss_mb

    baseline = peak_rss_mb()
    values = PHASES[phase](args)
    values.update(rss_after_imports_mb=baseline, peak_rss_mb=peak_rss_mb())
    out.write_text(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
