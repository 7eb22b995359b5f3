"""Benchmarks of the course, measured on the current machine and recorded in ``BENCHMARKS.md``.

One entry point, ``python -m benchmarks`` (``make bench``; see
:mod:`benchmarks.runner`), runs them in order:

1. :mod:`benchmarks.course`: wall time of every notebook under nbmake, and the total;
2. :mod:`benchmarks.efficiency`: training-loop samples/s over bare model-step samples/s, per loader;
3. :mod:`benchmarks.inference`: bundle vs course inference settings on a CT-sized volume;
4. :mod:`benchmarks.memory`: peak RSS of training and inference, each in a fresh process;
5. :mod:`benchmarks.gpu_recipe`: AMP vs fp32 with MONAI's fast-training recipe (CUDA only);
7. :mod:`benchmarks.viewer`: milliseconds per slider step of the slice viewer;
8. :mod:`benchmarks.phantom`: the phantom profile against the previous one (Dice, smoothness, time);
9. :mod:`benchmarks.ddp`: DistributedDataParallel against the plain loop, per epoch.

(Section 6 of ``BENCHMARKS.md`` comes from :mod:`benchmarks.real_step`, run by hand.)

``--quick`` is the seconds-long smoke that CI runs (tiny sizes, written to a scratch file
unless ``--output`` is given). Benchmarks are measurements, not timed tests: no figure is
asserted anywhere, the targets are reported as met or not met.

Example:
    $ python -m benchmarks --only efficiency inference
    $ python -m benchmarks --quick --output /tmp/bench.md
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

__all__ = ["MODULES", "NAMES"]

#: The benchmarks in the order they run (the course first: the others reuse its data and model).
NAMES = ["course", "efficiency", "inference", "memory", "gpu", "viewer", "phantom", "ddp"]


def __getattr__(name: str) -> Any:
    """``MODULES`` (the benchmark modules, in ``NAMES`` order), imported on first use.

    Lazily, so that ``python -m benchmarks.gpu_recipe`` does not import its own module twice.
    """
    if name == "MODULES":
        from . import course, ddp, efficiency, gpu_recipe, inference, memory, phantom, viewer

        modules: list[ModuleType] = [course, efficiency, inference, memory, gpu_recipe, viewer, phantom, ddp]
        assert [m.NAME for m in modules] == NAMES
        return modules
    raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
