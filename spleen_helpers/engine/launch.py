"""Start a ``torch.distributed`` process group on this machine and train in every process.

:func:`~spleen_helpers.engine.loop.train` knows how to train as one process of a group;
:func:`launch` starts ``N`` of them (``nccl`` on GPUs, ``gloo`` on CPUs) and turns a failure
in any into one line. The options and ``torchrun``'s entry point are
:mod:`spleen_helpers.tools.train`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..ground import errors
from ..ground.errors import ConfigError, CourseError
from ..ground.settings import CourseConfig

__all__ = ["launch"]




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
    threads. A :class:`~spleen_helpers.ground.errors.CourseError` in any process stops them all and is
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
    from .loop import train

    train(data_dir, out, CourseConfig.from_dict(cfg), resume=resume, overwrite=overwrite, progress=progress,
          keep_headers=keep_headers)
