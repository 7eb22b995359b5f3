"""``spleen-course train``'s options, and the entry point of every process torchrun starts.

``torchrun --standalone --nproc-per-node N -m spleen_helpers.tools.train ...`` trains with
PyTorch's launcher; ``spleen-course train --nproc N`` does the same with
:func:`~spleen_helpers.engine.launch.launch`.

Example:
    >>> args = train_arguments().parse_args(["--out", "runs/ddp", "--nproc", "2", "--max-epochs", "3"])
    >>> args.nproc, args.backend, training_overrides(args)
    (2, 'auto', {'max_epochs': 3})
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..ground.errors import ConfigError, CourseError
from ..ground.settings import CHOICES, CourseConfig, config_for
from .options import positive_int

#: torch.distributed backends: auto = nccl on GPUs, gloo on CPUs.
BACKENDS = ("auto", "gloo", "nccl")

__all__ = ["train_arguments", "training_overrides", "run_training", "main"]


def train_arguments(add_help: bool = False) -> argparse.ArgumentParser:
    """The options of ``spleen-course train`` (and of ``torchrun -m spleen_helpers.tools.train``).

    One ``--option`` per :class:`CourseConfig` setting, typed and documented from its field;
    an option left out keeps the data set's default.
    """
    p = argparse.ArgumentParser(add_help=add_help, prog="spleen_helpers.engine.loop",
                                description="Train the spleen UNet (see `spleen-course train --help`).")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="MSD Task09-layout data set (default: the synthetic phantom, generated if missing)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoint, best model, history)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if OUT holds a run")
    p.add_argument("--no-progress", action="store_true", help="a log line per epoch instead of a progress bar")
    p.add_argument("--keep-headers", action="store_true",
                   help="read every case with its header as it is, even where the spleen lies where a "
                        "header turned 180 degrees puts it (default: such cases are turned back)")
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="train with N processes on this machine (DistributedDataParallel): one per GPU, or "
                        "N CPU processes; each takes ceil(cases / N) training cases, a step averages their "
                        "gradients. Resume with the same N. Under torchrun leave it out (default 1)")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="torch.distributed backend: auto = nccl on GPUs, gloo on CPUs")
    group = p.add_argument_group("settings", "override the data set's defaults "
                                             "(CourseConfig fields; see spleen_helpers.ground.settings)")
    for f in dataclasses.fields(CourseConfig):
        if "help" not in f.metadata:
            continue
        default = f.default
        kwargs: dict[str, Any] = {"default": None, "help": f"{f.metadata['help']} (tutorial: {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            triple = len(default) == 3 and f.name not in ("channels", "strides")
            kwargs.update(type=type(default[0]), nargs=3 if triple else "+",
                          metavar=("X", "Y", "Z") if triple else "N")
        elif f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        else:
            kwargs["type"] = float if f.name == "val_fraction" else type(default)
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return p


def training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`CourseConfig` settings given on the command line (the others keep the data set's)."""
    names = [f.name for f in dataclasses.fields(CourseConfig) if "help" in f.metadata]
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run_training(args: argparse.Namespace) -> Path:
    """Train as ``args`` say (:func:`train_arguments`); return the run directory.

    In a plain process with ``--nproc N > 1`` it starts ``N`` processes (:func:`launch`); in a
    process that torchrun started (``WORLD_SIZE`` set) it joins torchrun's group and trains as
    one of its processes; otherwise it trains here.
    """
    import torch.distributed as dist

    from ..data.phantom import ensure_synthetic_dataset
    from ..engine.launch import _backend, _train_process, launch
    from ..engine.loop import train

    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1 and "TORCHELASTIC_RUN_ID" in os.environ
    if torchrun and args.nproc > 1:
        raise ConfigError(None, "--nproc is for `spleen-course train`; under torchrun the number of "
                                "processes is torchrun's --nproc-per-node")
    joined = False
    if torchrun and not dist.is_initialized():  # torchrun's environment says where the others are
        dist.init_process_group(_backend(args.backend, args.device))
        joined = True
    try:
        rank = dist.get_rank() if dist.is_initialized() else 0
        data_dir = args.data_dir
        if data_dir is None:  # the phantom, generated once (by rank 0) before the others read it
            if rank == 0:
                data_dir = ensure_synthetic_dataset()
            if dist.is_initialized():
                dist.barrier()
            data_dir = data_dir or ensure_synthetic_dataset()
        cfg = config_for(data_dir, **training_overrides(args))
        if args.nproc > 1:
            launch(args.nproc, _train_process, str(data_dir), str(args.out), cfg.to_dict(), args.resume,
                   args.overwrite, not args.no_progress, args.keep_headers,
                   backend=_backend(args.backend, cfg.device))
        else:
            train(data_dir, args.out, cfg, resume=args.resume, overwrite=args.overwrite,
                  progress=not args.no_progress, keep_headers=args.keep_headers)
    finally:
        if joined:
            dist.destroy_process_group()
    return Path(args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spleen_helpers.tools.train`` / ``torchrun ... -m spleen_helpers.tools.train``: train, one-line errors.

    Exit status 2 with ``error: ...`` on stderr (from the process that met the problem) for
    bad input.
    """
    args = train_arguments(add_help=True).parse_args(argv)
    try:
        run_training(args)
    except CourseError as exc:
        rank = os.environ.get("RANK", "0")
        where = f"(process {rank}) " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # torchrun --standalone --nproc-per-node N -m spleen_helpers.tools.train ...
    sys.exit(main())
