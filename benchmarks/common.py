"""Shared parts of the benchmarks: the run context, the machine, fresh-process phases, results.

Every benchmark module exposes ``NAME``, ``TITLE``, ``DESCRIPTION`` and
``run(ctx) -> Result``. A :class:`Result` is a table (one row per variant) plus notes; the
runner adds the columns that say where and how it was measured (:data:`CONTEXT_COLUMNS`)
and writes it into ``BENCHMARKS.md`` with :mod:`benchmarks.report`.

Peak memory is measured per phase in a fresh Python process (:func:`run_phase`), so one
phase's allocations never inflate another's figure: the child reports its own peak resident
set size (``VmHWM``) right after its imports and at the end, and the parent polls the
process tree as a check (:func:`run_process`).

Example:
    >>> r = Result(columns=["variant", "seconds"])
    >>> r.add(variant="a", seconds=fmt(1.23456, 2))
    >>> r.rows[0]["seconds"]
    '1.23'
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spleen_helpers.ground.errors import CourseError

__all__ = [
    "BenchmarkError",
    "CONTEXT_COLUMNS",
    "Context",
    "PhaseResult",
    "REPO_ROOT",
    "Result",
    "fmt",
    "load_note",
    "child_env",
    "machine_info",
    "now_utc",
    "peak_rss_mb",
    "run_phase",
    "run_process",
    "verdict",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Columns every row carries: when, where and how it was measured.
CONTEXT_COLUMNS = ["date", "machine", "CPUs", "torch", "MONAI", "command"]


class BenchmarkError(CourseError):
    """A benchmark could not measure what it should (a phase crashed, a file is missing)."""


def fmt(value: float | int | None, decimals: int = 1) -> str:
    """A number for a table cell; ``None`` or NaN gives ``n/a``.

    >>> fmt(3.14159, 2), fmt(None), fmt(12)
    ('3.14', 'n/a', '12')
    """
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if value != value:  # NaN
        return "n/a"
    return f"{value:.{decimals}f}"


def verdict(target: str, met: bool, quick: bool = False) -> str:
    """A target cell: ``"≤ 180 s: met"``; a quick smoke measures nothing to judge.

    >>> verdict("≤ 180 s", True), verdict("≤ 180 s", False, quick=True)
    ('≤ 180 s: met', 'n/a (quick smoke)')
    """
    if quick:
        return "n/a (quick smoke)"
    return f"{target}: {'met' if met else 'not met'}"


# ------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_note() -> str:
    """The machine's load and thread settings now: figures measured under load are not to be trusted.

    >>> load_note().startswith("load average")
    True
    """
    import torch

    try:
        load = f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        load = "load average unknown"
    env = ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
                    if os.environ.get(k))
    return (f"{load} on {_usable_cpus()} CPUs at the start; torch threads {torch.get_num_threads()}"
            + (f"; {env}" if env else ""))


def machine_info() -> dict[str, str]:
    """Machine, usable CPU count and library versions, as the context columns want them.

    >>> sorted(machine_info())
    ['CPUs', 'MONAI', 'machine', 'torch']
    """
    import monai
    import psutil
    import torch

    ram_gib = psutil.virtual_memory().total / 2**30
    gpu = ""
    if torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    machine = (f"{platform.system()} {platform.machine()}, {_cpu_model()}, "
               f"{ram_gib:.0f} GiB RAM{gpu}")
    return {"machine": machine, "CPUs": str(_usable_cpus()),
            "torch": str(torch.__version__), "MONAI": str(monai.__version__)}


# ------------------------------------------------------------------------------- results
@dataclass
class Result:
    """One benchmark's measurements: a table (``columns``, ``rows``) and notes (markdown lines).

    ``key_columns`` are the columns that, with the machine and versions, identify a row: a new
    run replaces the rows with the same key and keeps the others.
    """

    columns: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    key_columns: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, **cells: Any) -> None:
        """Append a row; every column must be given (a missing one is a programming error)."""
        missing = [c for c in self.columns if c not in cells]
        if missing:
            raise KeyError(f"row lacks columns {missing}")
        self.rows.append({c: str(cells[c]) for c in self.columns})


@dataclass
class PhaseResult:
    """What one fresh-process phase reported, with the parent's view of its peak RSS and time."""

    values: dict[str, Any]
    peak_rss_mb: float
    wall_s: float

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


# ------------------------------------------------------------------------------- processes
def _vm_hwm_mb(pid: int | str = "self") -> float | None:
    """``VmHWM`` (peak resident set of the current program image) from ``/proc``, in MiB."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    On Linux this is ``VmHWM``, not ``ru_maxrss``: a child's ``ru_maxrss`` starts at its
    parent's resident size at the fork and survives ``exec``, so a phase started from a big
    process would report at least that process's size. Elsewhere, ``ru_maxrss``.

    >>> peak_rss_mb() > 1
    True
    """
    hwm = _vm_hwm_mb()
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the checkout on ``PYTHONPATH`` and ``extra`` set."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.update(extra or {})
    return env


def _tree_peak_mb(root: int, peaks: dict[int, float]) -> None:
    """Update ``peaks`` (pid → MiB) with the peak RSS of ``root`` and all its descendants."""
    import psutil

    try:
        procs = [psutil.Process(root)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return
    for proc in procs:
        mb = _vm_hwm_mb(proc.pid)
        if mb is None:
            try:
                mb = proc.memory_info().rss / 2**20
            except psutil.Error:
                continue
        peaks[proc.pid] = max(peaks.get(proc.pid, 0.0), mb)


def run_process(cmd: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None,
                timeout: float = 3600.0, poll_s: float = 0.2) -> tuple[int, float, float]:
    """Run ``cmd`` to completion; return ``(exit code, wall seconds, peak RSS MiB)``.

    Output goes to ``log_path``. The peak RSS is that of the largest process of the tree
    (the command and its descendants), polled every ``poll_s`` seconds from each process's
    own high-water mark, so it misses nothing but a process living less than ``poll_s``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peaks: dict[int, float] = {}
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            _tree_peak_mb(proc.pid, peaks)
            try:
                code = proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
                    code = proc.wait()
                    break
        wall = time.perf_counter() - t0
    return code, wall, max(peaks.values(), default=float("nan"))


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = [t for t in path.read_text(errors="replace").splitlines() if t.strip()]
    except OSError:
        return ""
    return " / ".join(text[-lines:])


# ------------------------------------------------------------------------------- context
@dataclass
class Context:
    """State shared by the benchmarks of one run: options, a scratch folder, made artefacts.

    ``artifacts`` lets a later benchmark reuse what an earlier one built (the synthetic data
    set, a trained model, the CT-sized volume, fresh-process inference figures).
    """

    quick: bool = False
    model: Path | None = None
    keep: bool = False
    log: Callable[[str], None] = print
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="spleen-bench-")))
    artifacts: dict[str, Any] = field(default_factory=dict)

    def child_env(self) -> dict[str, str]:
        """Environment of the fresh processes: the quick smoke runs torch single-threaded.

        The smoke measures nothing, and one thread keeps it fast on a busy machine, where
        OpenMP threads spinning for a descheduled sibling can slow a step down 10-100 fold.
        """
        return child_env({"OMP_NUM_THREADS": "1"} if self.quick else None)

    def cleanup(self) -> None:
        """Remove the scratch folder (unless ``keep``)."""
        if self.keep:
            self.log(f"scratch files kept in {self.work_dir}")
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- what the benchmarks share --------------------------------------------------------
    def synthetic_config(self) -> Any:
        """The course's synthetic settings, read now (quick: tiny network, one epoch)."""
        from spleen_helpers.ground.settings import CourseConfig

        cfg = CourseConfig.synthetic()
        if self.quick:
            cfg = cfg.replace(val_count=1, channels=(4, 8, 16, 32, 64), patch_size=(16, 16, 16),
                              num_samples=2, batch_size=1, max_epochs=1, val_interval=1)
        return cfg

    def data_dir(self) -> Path:
        """The synthetic data set: the course's default one (quick: three tiny cases)."""
        if "data_dir" not in self.artifacts:
            from spleen_helpers.data.phantom import PhantomSpec, ensure_synthetic_dataset

            if self.quick:
                path = ensure_synthetic_dataset(self.work_dir / "data-quick", num_cases=3,
                                                spec=PhantomSpec(shape=(48, 48, 12), spacing=(5.0, 5.0, 12.0)))
            else:
                course_data = self.artifacts.get("course_data_dir")
                # the very data set the notebooks generated, when the course benchmark ran
                path = ensure_synthetic_dataset(course_data or self.work_dir / "data")
            self.artifacts["data_dir"] = path
        return self.artifacts["data_dir"]

    def trained_model(self) -> Path:
        """A trained synthetic model: ``--model``, the course benchmark's, or one trained now."""
        if self.model is not None:
            if not self.model.is_file():
                raise BenchmarkError(self.model, "model file does not exist")
            return self.model
        if "model" not in self.artifacts:
            from spleen_helpers.engine.loop import train

            cfg = self.synthetic_config()
            self.log(f"training a synthetic model ({cfg.max_epochs} epochs) for the Dice comparison")
            result = train(self.data_dir(), self.work_dir / "run", cfg, overwrite=True, progress=False,
                           log=lambda _msg: None)
            if not result.best_model_path.is_file():
                raise BenchmarkError(result.run_dir, "training saved no best model")
            self.artifacts["model"] = result.best_model_path
        return self.artifacts["model"]


def run_phase(ctx: Context, phase: str, args: dict[str, Any], timeout: float = 3600.0) -> PhaseResult:
    """Run ``benchmarks._worker PHASE`` in a fresh Python process and return its report.

    Raises BenchmarkError (one line, naming the log) when the phase fails.
    """
    n = len(list(ctx.work_dir.glob(f"phase-{phase}-*.json")))
    out = ctx.work_dir / f"phase-{phase}-{n}.json"
    log = out.with_suffix(".log")
    cmd = [sys.executable, "-m", "benchmarks._worker", phase, json.dumps(args), str(out)]
    code, wall, peak = run_process(cmd, cwd=REPO_ROOT, log_path=log, env=ctx.child_env(), timeout=timeout)
    if code != 0 or not out.is_file():
        raise BenchmarkError(log, f"phase {phase!r} failed with exit code {code}: {_tail(log)}")
    values = json.loads(out.read_text())
    return PhaseResult(values=values, peak_rss_mb=max(peak, float(values.get("peak_rss_mb", 0.0))),
                       wall_s=wall)


def now_utc() -> str:
    """The date and time of a measurement, UTC, to the minute."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
