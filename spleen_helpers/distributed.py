"""Training with more than one process: ``torch.distributed`` and ``DistributedDataParallel``.

:func:`~spleen_helpers.train.train` itself knows how to train as one process of a
``torch.distributed`` process group (each process its own part of the cases, gradients
averaged at every step, validation gathered, files written by rank 0 alone). This module
starts such groups and is the command line behind them:

* ``spleen-course train --nproc N ...`` starts ``N`` processes on this machine
  (:func:`launch`): one per GPU with the ``nccl`` backend, or ``N`` CPU processes with
  ``gloo`` (each with its share of the cores);
* ``torchrun --standalone --nproc-per-node N -m spleen_helpers.train ...`` does the same with
  PyTorch's own launcher (:func:`main` is the entry point of every process it starts; with
  torchrun's rendezvous options the processes may be on several machines).

Both take the options of ``spleen-course train`` (:func:`train_arguments`). A bad input
stops every process with one line, ``error: <file>: <what is wrong>``.

Example:
    >>> args = train_arguments().parse_args(["--out", "runs/ddp", "--nproc", "2", "--max-epochs", "3"])
    >>> args.nproc, args.backend, training_overrides(args)
    (2, 'auto', {'max_epochs': 3})
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import errors
from .config import CHOICES, CourseConfig, config_for, positive_int
from .errors import ConfigError, CourseError

__all__ = ["BACKENDS", "launch", "main", "run_training", "train_arguments", "training_overrides"]

BACKENDS = ("auto", "gloo", "nccl")


def train_arguments(add_help: bool = False) -> argparse.ArgumentParser:
    """The options of ``spleen-course train`` (and of ``torchrun -m spleen_helpers.train``).

    One ``--option`` per :class:`CourseConfig` setting, typed and documented from its field;
    an option left out keeps the data set's default.
    """
    p = argparse.ArgumentParser(add_help=add_help, prog="spleen_helpers.train",
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
                                             "(CourseConfig fields; see spleen_helpers.config)")
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


def _backend(name: str, device: str | None) -> str:
    """``auto``: ``nccl`` when the processes train on GPUs, else ``gloo``."""
    if name != "auto":
        return name
    return "nccl" if (device or "auto") != "cpu" and torch.cuda.is_available() else "gloo"


# ------------------------------------------------------------------------------ processes
def _error_record(exc: CourseError) -> str:
    return json.dumps({"kind": type(exc).__name__, "path": None if exc.path is None else str(exc.path),
                       "problem": exc.problem})


def _error_from_record(text: str) -> CourseError:
    record = json.loads(text)
    kind = getattr(errors, record["kind"], CourseError)
    return kind(record["path"], record["problem"])


def _spawned(local_rank: int, nproc: int, backend: str, store: str, threads: int,
             fn: Callable[..., Any], fn_args: tuple[Any, ...]) -> None:
    """Body of one process started by :func:`launch`: join the group, run ``fn``, leave."""
    import torch.distributed as dist

    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nproc),
                      LOCAL_WORLD_SIZE=str(nproc))
    if threads:
        torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method=f"file://{store}/rendezvous", rank=local_rank,
                            world_size=nproc)
    try:
        fn(*fn_args)
    except CourseError as exc:  # reported once, in one line, by the launching process
        Path(store, f"error-{local_rank}.json").write_text(_error_record(exc))
        sys.exit(2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(nproc: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo") -> None:
    """Run ``fn(*args)`` in ``nproc`` new processes that form one ``torch.distributed`` group.

    ``fn`` must be importable (a module-level function): the processes are spawned, not
    forked. Process ``r`` gets ``RANK`` = ``LOCAL_RANK`` = ``r`` and ``WORLD_SIZE`` = ``nproc``;
    with ``nccl`` it uses GPU ``r``; with ``gloo`` each takes ``cpu_count // nproc`` torch
    threads. A :class:`~spleen_helpers.errors.CourseError` in any process stops them all and is
    raised here, once.

    >>> launch(2, print, "hello from each process")   # doctest: +SKIP
    """
    import torch.multiprocessing as mp

    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise ConfigError(None, f"--nproc {nproc} with nccl needs {nproc} GPUs; this machine has "
                                f"{torch.cuda.device_count()} (use --backend gloo for CPU processes)")
    threads = 0 if backend == "nccl" else max(1, (os.cpu_count() or 1) // nproc)
    store = tempfile.mkdtemp(prefix="spleen-ddp-")
    try:
        mp.start_processes(_spawned, args=(nproc, backend, store, threads, fn, args), nprocs=nproc,
                           join=True, start_method="spawn")
    except mp.ProcessExitedException as exc:
        reports = sorted(Path(store).glob("error-*.json"))
        if reports:
            raise _error_from_record(reports[0].read_text()) from None
        raise CourseError(None, f"training process {exc.error_index} stopped with exit code "
                                f"{exc.exit_code}") from None
    finally:
        shutil.rmtree(store, ignore_errors=True)


# -------------------------------------------------------------------------------- training
def _train_process(data_dir: str, out: str, cfg: dict[str, Any], resume: bool, overwrite: bool,
                   progress: bool, keep_headers: bool = False) -> None:
    from .train import train

    train(data_dir, out, CourseConfig.from_dict(cfg), resume=resume, overwrite=overwrite, progress=progress,
          keep_headers=keep_headers)


def run_training(args: argparse.Namespace) -> Path:
    """Train as ``args`` say (:func:`train_arguments`); return the run directory.

    In a plain process with ``--nproc N > 1`` it starts ``N`` processes (:func:`launch`); in a
    process that torchrun started (``WORLD_SIZE`` set) it joins torchrun's group and trains as
    one of its processes; otherwise it trains here.
    """
    import torch.distributed as dist

    from .synthetic import ensure_synthetic_dataset
    from .train import train

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
    """``python -m spleen_helpers.train`` / ``torchrun ... -m spleen_helpers.train``: train, one-line errors.

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


if __name__ == "__main__":
    sys.exit(main())
