"""Benchmark 7: the slice viewer, milliseconds per slider step.

One slider step redraws the three panels (image, label, output) of a slice. Measured on the
CT-sized synthetic volume of benchmark 3 (512 × 512 × 100, its label as label and prediction)
and on the course's real sample CT (122 × 101 × 112, its spleen mask), for:

* the viewer (:class:`spleen_helpers.teaching.viewers.SliceViewer`): a step sets the slider's value, which
  composes the panels with numpy from the windowed ``uint8`` volume and encodes one PNG;
* a matplotlib figure per step, the way the viewer drew before (the drawing of
  :func:`spleen_helpers.teaching.viewers.plot_slices`, saved to PNG), for comparison.

Each step moves to the next slice (a new picture each time); the median of the steps is
reported with the slowest. Target: ≤ 50 ms per step on 512 × 512 slices.

Example:
    >>> from benchmarks.common import Context
    >>> result = run(Context(quick=True))                                   # doctest: +SKIP
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any

from .common import Context, Result, fmt, verdict
from .inference import ct_volume

__all__ = ["NAME", "TITLE", "DESCRIPTION", "TARGET_MS", "run"]

NAME = "viewer"
TITLE = "7. Slice viewer: milliseconds per slider step"
TARGET_MS = 50.0
DESCRIPTION = f"""
One slider step of notebook 04's slice viewer (three panels: image, label, output, overlay on)
on the CT-sized synthetic volume of §3 (512 × 512 × 100) and on the course's real sample CT
(122 × 101 × 112): the viewer as it is (panels composed with numpy from a windowed `uint8`
volume made once, one PNG encoded by Pillow) versus a matplotlib figure per step (how the viewer
drew before; `plot_slices`' drawing saved as PNG). Every step shows the next axial slice; median
and slowest step. `build s` is making the viewer (loading, windowing). Target: ≤ {TARGET_MS:g} ms
per step on 512 × 512 slices.
"""


def _matplotlib_step(viewer: Any) -> bytes:
    """The current view drawn as the viewer drew it before: a matplotlib figure, saved as PNG."""
    from matplotlib.figure import Figure

    from spleen_helpers.teaching.viewers import AXIS_NAMES, _aspect, _draw_row

    axis, index = int(viewer.axis.value), int(viewer.slider.value)
    planes = viewer.current_slice_data()
    n = sum(p is not None for p in planes.values())
    fig = Figure(figsize=(3.6 * n, 3.6), dpi=80)
    axes = fig.subplots(1, n, squeeze=False)[0]
    titles = {k: f"{t} ({AXIS_NAMES[axis]} {index})" for k, t in viewer._titles.items()}
    _draw_row(axes, planes, titles, viewer._range, _aspect(viewer._vols["image"].spacing, axis), True, 0.45)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _steps(viewer: Any, count: int, draw: Any = None) -> list[float]:
    """Seconds of ``count`` steps, each to the next slice (wrapping); ``draw`` replaces the viewer's."""
    times = []
    top = viewer.slider.max
    for _ in range(count):
        nxt = (viewer.slider.value + 1) % (top + 1)
        t0 = time.perf_counter()
        if draw is None:
            viewer.slider.value = nxt          # the widget's own redraw, as in the notebook
        else:
            viewer._updating = True            # move without the viewer's redraw ...
            viewer.slider.value = nxt
            viewer._updating = False
            draw(viewer)                       # ... and draw the old way instead
        times.append(time.perf_counter() - t0)
    return times


def run(ctx: Context) -> Result:
    """Milliseconds per slider step, the viewer vs a matplotlib figure per step, on two volumes."""
    from spleen_helpers.data.dataset import sample_ct
    from spleen_helpers.teaching.viewers import slice_viewer

    ct = ct_volume(ctx)
    sample = sample_ct()
    volumes = [("CT-sized phantom", ct, ct.with_name("ct_label.nii.gz")),
               ("real sample CT", Path(sample.ct), Path(sample.ct_spleen))]
    steps = 5 if ctx.quick else 30
    result = Result(columns=["volume", "slice pixels", "drawing", "ms per step (median)", "slowest ms",
                             "build s", "steps", "target"], key_columns=("volume", "drawing"))
    medians: dict[tuple[str, str], float] = {}
    for name, image, label in volumes:
        t0 = time.perf_counter()
        viewer = slice_viewer(image, label, label)
        build = time.perf_counter() - t0
        shape = viewer.shape
        for drawing, draw in (("viewer (numpy + Pillow)", None),
                              ("matplotlib figure per step (before)", _matplotlib_step)):
            _steps(viewer, 2, draw)                      # warm-up: fonts, caches
            times = _steps(viewer, steps, draw)
            median = statistics.median(times) * 1000
            medians[(name, drawing)] = median
            big = shape[0] >= 512 and shape[1] >= 512
            target = (verdict(f"≤ {TARGET_MS:g} ms", median <= TARGET_MS, ctx.quick)
                      if big and draw is None else "")
            result.add(volume=f"{name} {'x'.join(map(str, shape))}", **{
                "slice pixels": f"{shape[0]}x{shape[1]}", "drawing": drawing,
                "ms per step (median)": fmt(median, 1), "slowest ms": fmt(max(times) * 1000, 1),
                "build s": fmt(build, 2) if draw is None else "", "steps": str(steps), "target": target})
            ctx.log(f"  {name}, {drawing}: {median:.1f} ms per step")
    for name, _, _ in volumes:
        new, old = medians[(name, "viewer (numpy + Pillow)")], medians[(name, "matplotlib figure per step (before)")]
        result.notes.append(f"{name}: {new:.1f} ms per step, {old / max(new, 1e-9):.0f}x faster than a "
                            f"matplotlib figure per step ({old:.0f} ms)")
    if ctx.quick:
        result.notes.append("quick smoke: a small volume and a few steps")
    return result
