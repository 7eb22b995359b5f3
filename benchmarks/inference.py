"""Benchmark 3: inference on a CT-sized volume, the course's way and settings against the bundle's.

**Time and peak RSS** of segmenting one CT-sized synthetic volume (512 × 512 × 100 voxels of
0.8 × 0.8 × 2.5 mm, written as ``.nii.gz``), each run in a fresh process, in turns:

* ``course``: :func:`spleen_helpers.engine.predict.predict_volume` (the fast path: the image read once
  into a float32 tensor, cropped before the window, resampled once in float32; the probability
  back on the image's grid in one resampling of the block around the spleen) with the course's
  real-data settings (:class:`CourseConfig` defaults: 160³ window, overlap 0.25);
* ``bundle``: the same path with the bundle's sliding-window settings and spacing (96³, overlap
  0.5, 1.5 × 1.5 × 2.0 mm);
* ``bundle pipeline``: the bundle's own inference (``spleen_ct_segmentation``
  ``configs/inference.json``: its preprocessing, ``SlidingWindowInferer``, softmax, ``Invertd`` of
  both channels onto the whole grid, argmax; :func:`benchmarks._worker.bundle_pipeline_mask`);
* ``course, Invertd path``: the course's settings the tutorial's way (whole-volume ``Invertd``,
  :func:`spleen_helpers.engine.predict.invertd_mask`), i.e. how the course predicted before.

The network is the real UNet with seeded weights (its time does not depend on them), whose
output is replaced by an organ-sized rule (:func:`benchmarks._worker.organ_sized`): an untrained
network marks a fifth of the CT, which no trained one does.

**Dice** needs a trained model, which exists only at the synthetic scale: the synthetic model
(``--model``, the course benchmark's, or one trained here) segments the synthetic validation and
test cases (1) with the course's synthetic settings on the fast path, (2) with the bundle's rule
(window = training patch, ``sw_batch_size`` 4, overlap 0.5) and (3) the tutorial's way
(``Invertd``), so that the fast path's masks are compared with the tutorial's: agreement (Dice of
the two masks) and Dice against the labels, in the original image space.

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
           "FAST_PATH_TOLERANCE", "TARGET_TIME_RATIO", "VARIANTS", "bundle_config", "ct_volume", "run"]

NAME = "inference"
TITLE = "3. Inference: bundle defaults vs course defaults"
#: The CT runs: name -> (settings, way through the code).
VARIANTS = {"bundle": ("bundle", "fast"), "course": ("course", "fast"),
            "bundle pipeline": ("bundle", "bundle"), "course, Invertd path": ("course", "invertd")}
TARGET_TIME_RATIO = 0.5
DICE_TOLERANCE = 0.02
FAST_PATH_TOLERANCE = 0.005
CT_SHAPE = (512, 512, 100)
CT_SPACING = (0.8, 0.8, 2.5)
#: MONAI model zoo, spleen_ct_segmentation/configs/inference.json: inferer and Spacingd.
BUNDLE = {"roi_size": (96, 96, 96), "sw_batch_size": 4, "overlap": 0.5, "pixdim": (1.5, 1.5, 2.0)}
DESCRIPTION = f"""
Seconds and peak RSS of segmenting one CT-sized synthetic volume ({' × '.join(map(str, CT_SHAPE))}
voxels of {' × '.join(map(str, CT_SPACING))} mm, `.nii.gz`), each run in a fresh process, in turns:
**course** = `predict_volume` (read once into float32, crop before the window, one float32
resampling; the probability back on the image's grid in one resampling of the block around the
spleen) with `CourseConfig()` (160³ window, overlap 0.25; the window no larger than the image
rounded up to 16 voxels, `window_for`: 160 × 112 × 128 here); **bundle** = the same path with the
bundle's settings (roi 96³, sw_batch_size 4, overlap 0.5, pixdim 1.5 × 1.5 × 2.0); **bundle
pipeline** = the bundle's own `inference.json` (its preprocessing, sliding window, softmax,
`Invertd` of both channels onto the whole grid, argmax); **course, Invertd path** = the course's
settings the tutorial's way (whole-volume `Invertd`, how the course predicted before). The
network is the real UNet (seeded), its output replaced by an organ-sized rule (an untrained
network marks a fifth of the CT). Dice: a trained synthetic model on the synthetic validation and
test cases with the course's synthetic settings (fast path), the bundle's rule (window = training
patch, sw_batch_size 4, overlap 0.5) and the tutorial's Invertd path. Targets: course time ≤
{TARGET_TIME_RATIO}× bundle time, Dice equal within {DICE_TOLERANCE}; the fast path's Dice within
{FAST_PATH_TOLERANCE} of the Invertd path's.
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

        from spleen_helpers.data.phantom import PhantomSpec, generate_case

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
    from spleen_helpers.ground.settings import CourseConfig

    course = CourseConfig()
    if ctx.quick:
        course = course.replace(channels=(4, 8, 16, 32, 64), pixdim=(8.0, 8.0, 8.0))
    bundle = bundle_config(course)
    if ctx.quick:
        bundle = bundle.replace(pixdim=course.pixdim)
    return {"bundle": bundle, "course": course}


def ct_phases(ctx: Context, repeats: int) -> dict[str, list[Any]]:
    """Fresh-process inference runs of the CT volume per variant (:data:`VARIANTS`), in turns,
    the order reversed every other round. Cached in the context, so the memory benchmark reuses them.
    """
    key = f"ct_phases_{repeats}"
    if key not in ctx.artifacts:
        image = ct_volume(ctx)
        cfgs = real_configs(ctx)
        names = list(VARIANTS)
        runs: dict[str, list[Any]] = {name: [] for name in names}
        for round_ in range(repeats):
            for name in (names if round_ % 2 == 0 else names[::-1]):
                settings, way = VARIANTS[name]
                phase = run_phase(ctx, "infer", {"image": str(image), "cfg": cfgs[settings].to_dict(), "seed": 0,
                                                 "path": way, "organ_sized": True})
                ctx.log(f"  CT volume, {name}: {phase['seconds']:.2f} s, peak RSS {phase.peak_rss_mb:.0f} MiB")
                runs[name].append(phase)
        ctx.artifacts[key] = runs
    return ctx.artifacts[key]


def _dice(ctx: Context) -> dict[str, Any]:
    """Mean Dice per way on the synthetic validation and test cases, one trained model; the fast
    path's masks against the tutorial's (Invertd) masks."""
    import nibabel as nib
    import numpy as np

    from spleen_helpers.engine.checkpoint import load_model
    from spleen_helpers.data.dataset import load_datalist, load_test_cases, split_datalist
    from spleen_helpers.engine.evaluate import case_metrics
    from spleen_helpers.engine.model import resolve_device
    from spleen_helpers.engine.predict import invertd_mask, predict_volume

    model_path = ctx.trained_model()
    model, cfg = load_model(model_path, device=resolve_device("auto"))
    device = next(model.parameters()).device
    data_dir = ctx.data_dir()
    cases = split_datalist(load_datalist(data_dir), cfg)[1] + list(load_test_cases(data_dir))
    ways = {"course": lambda c: predict_volume(model, c, cfg, device)[0],
            "bundle": lambda c: predict_volume(model, c, bundle_rule_config(cfg), device)[0],
            "invertd": lambda c: invertd_mask(model, c, cfg, device)}
    out: dict[str, Any] = {k: {"dice": [], "seconds": 0.0} for k in ways}
    agreement = []
    for case in cases:
        ref_img = nib.load(case["label"])
        ref = np.asanyarray(ref_img.dataobj)
        spacing = tuple(float(s) for s in nib.affines.voxel_sizes(ref_img.affine))
        masks = {}
        for name, way in ways.items():
            t0 = time.perf_counter()
            masks[name] = way(case["image"])
            out[name]["seconds"] += time.perf_counter() - t0
            out[name]["dice"].append(case_metrics(masks[name], ref, spacing).dice)
        a, b = masks["course"] > 0, masks["invertd"] > 0
        agreement.append(2.0 * (a & b).sum() / max(1, a.sum() + b.sum()))
    for v in out.values():
        v["mean"] = float(np.mean(v["dice"]))
    out["_meta"] = {"model": str(model_path), "cases": len(cases), "agreement": float(min(agreement)),
                    "cfg": {"course": cfg, "bundle": bundle_rule_config(cfg)}}
    return out


def _describe(cfg: Any) -> str:
    roi = "x".join(str(s) for s in cfg.roi_size)
    pix = "x".join(f"{p:g}" for p in cfg.pixdim)
    return f"roi {roi}, sw_batch {cfg.sw_batch_size}, overlap {cfg.overlap:g}, pixdim {pix}"


def run(ctx: Context) -> Result:
    """Time and peak RSS on the CT volume per variant; Dice of the ways on synthetic cases."""
    repeats = 1 if ctx.quick else 2
    cfgs = real_configs(ctx)
    runs = ct_phases(ctx, repeats)
    dice = _dice(ctx)
    mean_s = {k: sum(p["seconds"] for p in v) / len(v) for k, v in runs.items()}
    ratio = mean_s["course"] / mean_s["bundle"]
    ratio_pipeline = mean_s["course"] / mean_s["bundle pipeline"]
    d_course, d_bundle, d_invertd = (dice[k]["mean"] for k in ("course", "bundle", "invertd"))
    equal = abs(d_course - d_bundle) <= DICE_TOLERANCE
    fast_equal = abs(d_course - d_invertd) <= FAST_PATH_TOLERANCE
    result = Result(columns=["variant", "parameters", "CT seconds (runs)", "CT peak RSS MiB", "CT mask voxels",
                             "time ratio course/this", "synthetic Dice", "synthetic parameters", "target"],
                    key_columns=("variant",))
    synthetic = {"course": ("course", d_course), "bundle": ("bundle", d_bundle),
                 "course, Invertd path": ("course", d_invertd)}
    for name, (settings, way) in VARIANTS.items():
        p = runs[name]
        target = ""
        if name == "bundle":
            target = verdict(f"course ≤ {TARGET_TIME_RATIO}x and Dice within {DICE_TOLERANCE}",
                             ratio <= TARGET_TIME_RATIO and equal, ctx.quick)
        elif name == "bundle pipeline":
            target = verdict(f"course ≤ {TARGET_TIME_RATIO}x", ratio_pipeline <= TARGET_TIME_RATIO, ctx.quick)
        elif name == "course, Invertd path":
            target = verdict(f"fast path's Dice within {FAST_PATH_TOLERANCE}", fast_equal, ctx.quick)
        syn = synthetic.get(name)
        result.add(variant=name, parameters=_describe(cfgs[settings]), **{
            "CT seconds (runs)": f"{fmt(mean_s[name], 2)} ({', '.join(fmt(r['seconds'], 2) for r in p)})",
            "CT peak RSS MiB": fmt(max(r.peak_rss_mb for r in p), 0),
            "CT mask voxels": str(p[0]["mask_voxels"]),
            "time ratio course/this": fmt(mean_s["course"] / mean_s[name], 3),
            "synthetic Dice": fmt(syn[1], 4) if syn else "",
            "synthetic parameters": _describe(dice["_meta"]["cfg"][syn[0]]) if syn else "",
            "target": target})
    shape = runs["course"][0]["shape"]
    result.notes.append(f"CT volume {'x'.join(map(str, shape))} voxels on {runs['course'][0]['device']}: the course "
                        f"takes {ratio:.2f}x the time of the bundle's settings on the same path and "
                        f"{ratio_pipeline:.2f}x that of the bundle's own pipeline ({mean_s['course']:.2f} s vs "
                        f"{mean_s['bundle']:.2f} s and {mean_s['bundle pipeline']:.2f} s; the course's settings the "
                        f"Invertd way: {mean_s['course, Invertd path']:.2f} s), mean of {repeats} fresh-process "
                        "run(s) each")
    result.notes.append(f"Dice on {dice['_meta']['cases']} synthetic validation and test case(s): fast path "
                        f"{d_course:.4f}, bundle rule {d_bundle:.4f} (difference {d_course - d_bundle:+.4f}, tolerance "
                        f"{DICE_TOLERANCE}: {'equal' if equal else 'NOT equal'}), Invertd path {d_invertd:.4f} "
                        f"(difference {d_course - d_invertd:+.4f}); fast-path and Invertd masks agree with Dice "
                        f"≥ {dice['_meta']['agreement']:.4f} on every case; model {Path(dice['_meta']['model']).name}")
    if ctx.quick:
        result.notes.append("quick smoke: a small volume, a tiny network and a one-epoch model")
    result.data.update(mean_seconds=mean_s, ratio=ratio, ratio_pipeline=ratio_pipeline,
                       dice={k: dice[k]["mean"] for k in ("course", "bundle", "invertd")})
    return result
