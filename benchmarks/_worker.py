"""One benchmark phase in a fresh process: ``python -m benchmarks._worker PHASE ARGS_JSON OUT_JSON``.

Phases:

* ``train``: :func:`spleen_helpers.engine.loop.train` on ``data_dir`` with the configuration ``cfg``
  (a :meth:`CourseConfig.to_dict`) into ``run_dir``;
* ``infer``: one NIfTI ``image`` segmented with ``cfg`` the ``path`` way: ``fast``
  (:func:`spleen_helpers.engine.predict.predict_volume`), ``invertd`` (the tutorial's,
  :func:`spleen_helpers.engine.predict.invertd_mask`) or ``bundle`` (the bundle's own inference,
  :func:`bundle_pipeline_mask`), with the weights of ``model`` (a checkpoint) or, for timing
  only, a seeded fresh network (``organ_sized``: with an organ-sized output, :func:`organ_sized`);
* ``train_ddp``: the same training in ``nproc`` processes of one ``torch.distributed`` group
  (:func:`spleen_helpers.engine.launch.launch`, backend ``backend``).

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
    from spleen_helpers.ground.settings import CourseConfig
    from spleen_helpers.engine.loop import train

    cfg = CourseConfig.from_dict(args["cfg"])
    t0 = time.perf_counter()
    result = train(args["data_dir"], args["run_dir"], cfg, overwrite=True, progress=False,
                   log=lambda _msg: None)
    return {"seconds": time.perf_counter() - t0, "epochs": result.epochs_run,
            "best_dice": result.best_metric, "device": cfg.device}


def organ_sized(unet: Any) -> Any:
    """Timing stand-in: the real UNet's compute with an organ-sized output.

    The network runs as it is (its time is the sliding window's); its logits are replaced by
    a rule on the input (windowed intensities of contrast-enhanced spleen, 0.66-0.9) so that
    the mask has the size of an organ. An untrained network marks about a fifth of a CT, and
    the fast way back to the image's grid works on the block that holds the mask.
    """
    import torch

    class OrganSized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = unet

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.unet(x)
            s = torch.minimum(x - 0.66, 0.9 - x) * 50.0
            return out * 0.0 + torch.cat([-s, s], dim=1)

    return OrganSized()


def bundle_pipeline_mask(model: Any, image: str, cfg: Any, device: Any) -> Any:
    """The bundle's own inference (``spleen_ct_segmentation`` ``configs/inference.json``):
    its preprocessing (orientation, spacing, intensity window: ``transform_order="bundle"``),
    ``SlidingWindowInferer``, ``Activationsd(softmax)``, ``Invertd`` of both channels onto the
    whole original grid, ``AsDiscreted(argmax)`` (``SaveImaged`` left out)."""
    import numpy as np
    import torch
    from monai.transforms import Activationsd, AsDiscreted, Compose, Invertd

    from spleen_helpers.engine.model import infer_logits
    from spleen_helpers.engine.transforms import infer_transforms

    pre = infer_transforms(cfg)
    data = pre({"image": image})
    with torch.no_grad():
        data["pred"] = infer_logits(model, data["image"].unsqueeze(0), cfg, device)[0].float().cpu()
    post = Compose([Activationsd(keys="pred", softmax=True),
                    Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
                    AsDiscreted(keys="pred", argmax=True)])
    return np.asarray(post(data)["pred"][0], np.uint8)


def _phase_infer(args: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from spleen_helpers.engine.checkpoint import load_model
    from spleen_helpers.ground.settings import CourseConfig
    from spleen_helpers.engine.model import build_unet, resolve_device
    from spleen_helpers.engine.predict import invertd_mask, predict_volume

    cfg = CourseConfig.from_dict(args["cfg"])
    device = resolve_device(cfg.device)
    if args.get("model"):
        model, _ = load_model(args["model"], cfg, device)
    else:
        torch.manual_seed(int(args.get("seed", 0)))
        model = build_unet(cfg).to(device).eval()
        if args.get("organ_sized"):
            model = organ_sized(model).to(device).eval()
    way = args.get("path", "fast")
    t0 = time.perf_counter()
    if way == "fast":
        mask, _affine = predict_volume(model, args["image"], cfg, device)
    elif way == "invertd":
        mask = invertd_mask(model, args["image"], cfg, device)
    else:
        mask = bundle_pipeline_mask(model, args["image"], cfg, device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "shape": list(mask.shape), "mask_voxels": int(np.count_nonzero(mask)),
            "device": str(device)}


def _phase_train_ddp(args: dict[str, Any]) -> dict[str, Any]:
    from spleen_helpers.engine.launch import _train_process, launch

    t0 = time.perf_counter()
    launch(int(args["nproc"]), _train_process, args["data_dir"], args["run_dir"], args["cfg"], False, True,
           False, backend=args["backend"])
    return {"seconds": time.perf_counter() - t0, "device": args["cfg"]["device"]}


PHASES = {"train": _phase_train, "infer": _phase_infer, "train_ddp": _phase_train_ddp}


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

    import spleen_helpers.engine.evaluate  # noqa: F401
    import spleen_helpers.engine.loop  # noqa: F401

    from benchmarks.common import peak_rss_mb

    baseline = peak_rss_mb()
    values = PHASES[phase](args)
    values.update(rss_after_imports_mb=baseline, peak_rss_mb=peak_rss_mb())
    out.write_text(json.dumps(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
