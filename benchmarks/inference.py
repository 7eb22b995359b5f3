"""Benchmark 3: sliding-window inference, MONAI's spleen bundle defaults versus the course's.

**Time and peak RSS** on one CT-sized synthetic volume (512 × 512 × 100 voxels of
0.8 × 0.8 × 2.5 mm, written as ``.nii.gz``), through the full path of
:func:`spleen_helpers.evaluate.predict_volume`: loading, preprocessing
(:func:`~spleen_helpers.transforms.infer_transforms`), sliding window, ``Invertd`` back to the
original grid, argmax. Each setting runs in a fresh process, twice, in the order bundle,
course, course, bundle; the network is the real one (:class:`CourseConfig` channels) with
seeded weights, since the time of a dense network does not depend on its weights.

* bundle: ``spleen_ct_segmentation`` ``configs/inference.json`` of the MONAI model zoo:
  ``SlidingWindowInferer(roi_size=[96, 96, 96], sw_batch_size=4, overlap=0.5)``,
  ``Spacingd(pixdim=[1.5, 1.5, 2.0])``, the same UNet (16..256 channels, 2 residual units,
  batch norm). Its evaluator enables AMP, which only acts on CUDA.
* course: :class:`CourseConfig` defaults (the real-data settings), read at run time.

Both use the course's preprocessing (the bundle's has no ``CropForegroundd``), so the
comparison is of the sliding-window settings, which is what the course chooses.

**Dice** at equal footing needs a trained model, which exists only at the synthetic scale: the
synthetic model (``--model``, the one the course benchmark's notebook trained, or one trained
here with :meth:`CourseConfig.synthetic`) segments the synthetic validation cases once with
the course's synthetic inference settings and once with the bundle's rule (window = training
patch, ``sw_batch_size`` 4, overlap 0.5). Dice is computed in the original image space.

Example:
    >>> from benchmarks.common import Context
    >>> result = run(Context(quick=True))                                   # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import Context, Result, fmt, run_phase, verdict

__all__ = ["NAME", "TITLE", "DESCRIPTION", "BUNDLE", "CT_SHAPE", "CT_SPACING", "DICE_TOLERANCE",
           "TARGET_TIME_RATIO", "bundle_config", "ct_volume", "run"]

NAME = "inference"
TITLE = "3. Inference: bundle defaults vs course defaults"
TARGET_TIME_RATIO = 0.5
DICE_TOLERANCE = 0.02
CT_SHAPE = (512, 512, 100)
CT_SPACING = (0.8, 0.8, 2.5)
#: MONAI model zoo, spleen_ct_segmentation/configs/inference.json: inferer and Spacingd.
BUNDLE = {"roi_size": (96, 96, 96), "sw_batch_size": 4, "overlap": 0.5, "pixdim": (1.5, 1.5, 2.0)}
DESCRIPTION = f"""
Seconds and peak RSS of segmenting one CT-sized synthetic volume ({' × '.join(map(str, CT_SHAPE))}
voxels of {' × '.join(map(str, CT_SPACING))} mm, `.nii.gz`) through the full `predict_volume` path
(load, preprocessing, sliding window, `Invertd` to the original grid, argmax), each run in a
fresh process, bundle / course / course / bundle. Bundle = MONAI model zoo
`spleen_ct_segmentation` `inference.json`: roi 96³, sw_batch_size 4, overlap 0.5, pixdim
1.5 × 1.5 × 2.0; course = `CourseConfig()` defaults. Same UNet and the course's preprocessing
for both. Dice: a trained synthetic model on the synthetic validation cases with the course's
synthetic inference settings vs the bundle's rule (window = training patch, sw_batch_size 4,
overlap 0.5). Target: course time ≤ {TARGET_TIME_RATIO}× bundle time, Dice equal within
{DICE_TOLERANCE}.
"""


def bundle_config(cfg: Any) -> Any:
    """``cfg`` with the bundle's sliding-window settings and spacing."""
    return cfg.replace(**BUNDLE)


def bundle_rule_config(cfg: Any) -> Any:
    """The bundle's rule at another scale: window = training patch, sw_batch_size 4, overlap 0.5."""
    return cfg.replace(roi_size=cfg.patch_size, sw_batch_size=BUNDLE["sw_batch_size"], overlap=BUNDLE["overlap"])


def ct_volume(ctx: Context) -> Path:
    """The CT-sized synthetic volume as ``.nii.gz`` (quick: a small one), made once per run."""
    if "ct_volume" not in ctx.artifacts:
        import nibabel as nib

        from spleen_helpers.synthetic import PhantomSpec, generate_case

        shape, spacing = ((64, 64, 16), (6.0, 6.0, 15.0)) if ctx.quick else (CT_SHAPE, CT_SPACING)
        spec = PhantomSpec(shape=shape, spacing=spacing)
        ctx.log(f"generating a {'x'.join(map(str, shape))} synthetic CT volume")
        image, label, affine = generate_case(seed=4242, spec=spec)
        path = ctx.work_dir / "ct" / "ct.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(image, affine), path)
        nib.save(nib.Nifti1Image(label, affine), path.with_name("ct_label.nii.gz"))
        ctx.artifacts["ct_volume"] = path
    return ctx.artifacts["ct_volume"]


def real_configs(ctx: Context) -> dict[str, Any]:
    """``{"bundle": cfg, "course": cfg}`` for the CT-sized volume (quick: tiny network, coarse grid)."""
    from spleen_helpers.config import CourseConfig

    course = CourseConfig()
    if ctx.quick:
        course = course.replace(channels=(4, 8, 16, 32, 64), pixdim=(8.0, 8.0, 8.0))
    bundle = bundle_config(course)
    if ctx.quick:
        bundle = bundle.replace(pixdim=course.pixdim)
    return {"bundle": bundle, "course": course}


def ct_phases(ctx: Context, repeats: int) -> dict[str, list[Any]]:
    """Fresh-process inference runs of the CT volume per setting, in the order b, c, c, b, ...

    Cached in the context, so the memory benchmark reuses them.
    """
    key = f"ct_phases_{repeats}"
    if key not in ctx.artifacts:
        image = ct_volume(ctx)
        cfgs = real_configs(ctx)
        order = (["bundle", "course", "course", "bundle"] * repeats)[: 2 * repeats]
        runs: dict[str, list[Any]] = {"bundle": [], "course": []}
        for name in order:
            phase = run_phase(ctx, "infer", {"image": str(image), "cfg": cfgs[name].to_dict(), "seed": 0})
            ctx.log(f"  CT volume, {name} settings: {phase['seconds']:.1f} s, peak RSS {phase.peak_rss_mb:.0f} MiB")
            runs[name].append(phase)
        ctx.artifacts[key] = runs
    return ctx.artifacts[key]


def _dice(ctx: Context) -> dict[str, dict[str, float]]:
    """Mean Dice and seconds per setting on the synthetic validation cases, one trained model."""
    import nibabel as nib
    import numpy as np

    from spleen_helpers.data import load_datalist, split_datalist
    from spleen_helpers.evaluate import case_metrics
    from spleen_helpers.predict import predict_volume
    from spleen_helpers.model import resolve_device
    from spleen_helpers.checkpoint import load_model

    model_path = ctx.trained_model()
    model, cfg = load_model(model_path, device=resolve_device("auto"))
    device = next(model.parameters()).device
    _, val_files = split_datalist(load_datalist(ctx.data_dir()), cfg)
    settings = {"course": cfg, "bundle": bundle_rule_config(cfg)}
    out: dict[str, dict[str, Any]] = {k: {"dice": [], "seconds": 0.0, "cfg": c} for k, c in settings.items()}
    for case in val_files:
        ref_img = nib.load(case["label"])
        ref = np.asanyarray(ref_img.dataobj)
        spacing = tuple(float(s) for s in nib.affines.voxel_sizes(ref_img.affine))
        for name, c in settings.items():
            t0 = time.perf_counter()
            mask, _ = predict_volume(model, case["image"], c, device)
            out[name]["seconds"] += time.perf_counter() - t0
            out[name]["dice"].append(case_metrics(mask, ref, spacing).dice)
    for v in out.values():
        v["mean"] = float(np.mean(v["dice"]))
    out["_meta"] = {"model": str(model_path), "cases": len(val_files)}
    return out


def _describe(cfg: Any) -> str:
    roi = "x".join(str(s) for s in cfg.roi_size)
    pix = "x".join(f"{p:g}" for p in cfg.pixdim)
    return f"roi {roi}, sw_batch {cfg.sw_batch_size}, overlap {cfg.overlap:g}, pixdim {pix}"


def run(ctx: Context) -> Result:
    """Time and peak RSS on the CT volume per setting; Dice of both settings on synthetic cases."""
    repeats = 1 if ctx.quick else 2
    cfgs = real_configs(ctx)
    runs = ct_phases(ctx, repeats)
    dice = _dice(ctx)
    mean_s = {k: sum(p["seconds"] for p in v) / len(v) for k, v in runs.items()}
    ratio = mean_s["course"] / mean_s["bundle"]
    d_course, d_bundle = dice["course"]["mean"], dice["bundle"]["mean"]
    equal = abs(d_course - d_bundle) <= DICE_TOLERANCE
    met = ratio <= TARGET_TIME_RATIO and equal
    result = Result(columns=["settings", "parameters", "CT seconds (runs)", "CT peak RSS MiB",
                             "synthetic val Dice", "synthetic parameters", "synthetic seconds",
                             "time ratio course/bundle", "target"], key_columns=("settings",))
    for name in ("bundle", "course"):
        p = runs[name]
        result.add(settings=name, parameters=_describe(cfgs[name]), **{
            "CT seconds (runs)": f"{fmt(mean_s[name])} ({', '.join(fmt(r['seconds']) for r in p)})",
            "CT peak RSS MiB": fmt(max(r.peak_rss_mb for r in p), 0),
            "synthetic val Dice": fmt(dice[name]["mean"], 4),
            "synthetic parameters": _describe(dice[name]["cfg"]),
            "synthetic seconds": fmt(dice[name]["seconds"], 1),
            "time ratio course/bundle": fmt(ratio, 3) if name == "course" else "1",
            "target": verdict(f"≤ {TARGET_TIME_RATIO} and Dice within {DICE_TOLERANCE}", met, ctx.quick)
            if name == "course" else ""})
    shape = runs["course"][0]["shape"]
    result.notes.append(f"CT volume {'x'.join(map(str, shape))} voxels; course settings take "
                        f"{ratio:.2f}x the bundle's time ({mean_s['course']:.1f} s vs {mean_s['bundle']:.1f} s, "
                        f"mean of {repeats} fresh-process run(s) each) on {runs['course'][0]['device']}")
    result.notes.append(f"Dice on {dice['_meta']['cases']} synthetic validation case(s): course {d_course:.4f}, "
                        f"bundle rule {d_bundle:.4f} (difference {d_course - d_bundle:+.4f}, tolerance "
                        f"{DICE_TOLERANCE}: {'equal' if equal else 'NOT equal'}); model {Path(dice['_meta']['model']).name}")
    if ctx.quick:
        result.notes.append("quick smoke: a small volume, a tiny network and a one-epoch model")
    result.data.update(mean_seconds=mean_s, ratio=ratio, dice={k: dice[k]["mean"] for k in ("course", "bundle")})
    return result
