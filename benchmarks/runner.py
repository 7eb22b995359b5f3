"""The one entry point of the benchmarks: options, order, and writing ``BENCHMARKS.md``.

``python -m benchmarks`` (and ``make bench``) end here. Without ``--quick`` the
results go to the checkout's ``BENCHMARKS.md`` (or ``--output``); with ``--quick`` (the CI
smoke: tiny sizes, seconds) to a scratch file unless ``--output`` is given. Each benchmark's
rows are written as soon as it finishes, so a failure later in the run loses nothing measured.

Example:
    >>> parser = build_parser()
    >>> parser.parse_args(["--quick", "--only", "efficiency"]).only
    ['efficiency']
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from spleen_helpers.ground.errors import ConfigError, CourseError

from . import MODULES, NAMES
from .common import REPO_ROOT, Context, load_note, machine_info, now_utc
from .report import render_section, write_results

__all__ = ["add_arguments", "build_parser", "main", "run_benchmarks", "DEFAULT_OUTPUT"]

DEFAULT_OUTPUT = REPO_ROOT / "BENCHMARKS.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of the entry point."""
    p.add_argument("--quick", action="store_true",
                   help="seconds-long smoke with tiny sizes (CI); writes to a scratch file unless --output")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help=f"run only these benchmarks: {', '.join(NAMES)}")
    p.add_argument("--output", type=Path, default=None,
                   help=f"markdown file to write the rows into (default: {DEFAULT_OUTPUT.name} in the "
                        "checkout; with --quick, a scratch file)")
    p.add_argument("--model", type=Path, default=None,
                   help="trained synthetic model (best_metric_model.pth) for the Dice comparison; "
                        "default: the course benchmark's, else one trained on the spot")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (data, logs, runs)")


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks``."""
    p = argparse.ArgumentParser(prog=prog, description="Measure the course's performance on this machine "
                                                       "and record it in BENCHMARKS.md.")
    add_arguments(p)
    return p


def _select(only: Sequence[str] | None) -> list:
    if not only:
        return list(MODULES)
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        raise ConfigError(None, f"unknown benchmark(s) {unknown}; choose from {NAMES}")
    return [m for m in MODULES if m.NAME in only]


def run_benchmarks(only: Sequence[str] | None = None, quick: bool = False, output: Path | None = None,
                   model: Path | None = None, keep: bool = False, command: str = "python -m benchmarks",
                   log: Callable[[str], None] = print) -> Path:
    """Run the selected benchmarks in order; write their rows to ``output``; return its path."""
    selected = _select(only)
    if output is None:
        if quick:
            output = Path(tempfile.mkdtemp(prefix="spleen-bench-quick-")) / "BENCHMARKS.md"
        else:
            output = DEFAULT_OUTPUT
    if model is not None and not Path(model).is_file():
        raise ConfigError(model, "model file does not exist")
    context = {"date": now_utc(), **machine_info(), "command": command}
    log(f"benchmarks {[m.NAME for m in selected]} on {context['machine']}, {context['CPUs']} CPUs; "
        f"torch {context['torch']}, MONAI {context['MONAI']}{' (quick smoke)' if quick else ''}")
    ctx = Context(quick=quick, model=Path(model) if model else None, keep=keep, log=log)
    import torch

    threads = torch.get_num_threads()
    if quick:  # see Context.child_env: the smoke runs single-threaded
        torch.set_num_threads(1)
    try:
        for mod in selected:
            t0 = time.perf_counter()
            note = load_note()
            result = mod.run(ctx)
            if result is None:
                continue
            result.notes.append(note)
            write_results(output, {mod.NAME: (mod, result)}, context, MODULES)
            log(f"\n## {mod.TITLE} ({time.perf_counter() - t0:.0f} s)\n")
            log(render_section([], result, context))
    finally:
        torch.set_num_threads(threads)
        ctx.cleanup()
    log(f"results written to {output}")
    return output


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks") -> int:
    """``python -m benchmarks``; a CourseError prints one line and exits 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    try:
        run_benchmarks(args.only, args.quick, args.output, args.model, args.keep,
                       command=shlex.join([*prog.split(), *argv]))
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
