"""Atomic file writes: a reader never sees a partial file under its final name.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "hello.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("hi")
    >>> out.read_text()
    'hi'
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import CourseError, DataError

__all__ = [
    "atomic_path", "file_md5", "staging_dir", "staged_download", "earlier_download",
    "write_json_atomic", "save_nifti_atomic"
]

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; move it into place only if the block succeeds.

    The temporary file lives in the same directory (same file system), is flushed to disk
    and then renamed with :func:`os.replace`, which is atomic on POSIX and Windows. If the
    block raises, the temporary file is removed and ``final`` is left untouched.
    ``suffix`` defaults to the final name's suffixes (e.g. ``.nii.gz``) so that writers
    which pick a format from the extension still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".part{suffix}",
                                    dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_md5(path: str | os.PathLike) -> str:
    """The md5 of a file's bytes, read in 1 MiB chunks (downloads are checked against it; MONAI's
    ``check_hash`` says only yes or no, and a mismatch is reported with both sums).

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"spleen")
    >>> file_md5(p)
    'e7c617543440a6daa4dfd10ef49e0868'
    """
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def staging_dir(parent: str | os.PathLike, name: str) -> Path:
    """A new hidden folder ``parent/.<name>.download-XXXX`` for a download to arrive and be
    checked in before it is moved into place with :func:`os.replace` (same file system).

    Raises a one-line DataError naming ``parent`` when it cannot be written to.

    >>> import tempfile
    >>> staging_dir(tempfile.mkdtemp(), "Task09_Spleen").name.startswith(".Task09_Spleen.download-")
    True
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{name}.download-", dir=parent))
    except OSError as exc:
        raise DataError(parent, f"cannot write there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def staged_download(parent: str | os.PathLike, name: str) -> Iterator[Path]:
    """A :func:`staging_dir` for the block; it is removed with whatever is left in it when the
    block ends, however it ends (what was moved into place stays).

    >>> import tempfile
    >>> with staged_download(tempfile.mkdtemp(), "Task09_Spleen") as staging:
    ...     _ = (staging / "part").write_text("x")
    >>> staging.exists()
    False
    """
    staging = staging_dir(parent, name)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def earlier_download(target: Path, open_found: Callable[[Path], T], error: type[CourseError],
                     unusable: str, *, chain: bool = False) -> T | None:
    """What an earlier download left at ``target``, opened with ``open_found``; None when nothing is there.

    When ``open_found`` raises ``error``, a new ``error`` names ``target`` instead, with the
    message ``unusable`` formatted with the first error as ``exc`` (e.g. ``"exists but is not a
    usable bundle ({exc.problem}); delete it and download again"``); ``chain`` keeps the first
    error as its cause, else it is left out of the traceback.

    >>> import tempfile
    >>> earlier_download(Path(tempfile.mkdtemp()) / "nothing", Path.stat, DataError, "") is None
    True
    """
    if not target.exists():
        return None
    try:
        return open_found(target)
    except error as exc:
        raise error(target, unusable.format(exc=exc)) from (exc if chain else None)


def _default_file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would have given the file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_json_atomic(obj: Any, final: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON to ``final`` atomically; return the path."""
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(final)


def save_nifti_atomic(array: Any, affine: Any, final: str | os.PathLike, description: str = "") -> Path:
    """Write ``array`` as NIfTI with ``affine`` as both sform and qform (mm units), atomically.

    >>> import numpy as np, tempfile
    >>> p = save_nifti_atomic(np.zeros((2, 2, 2), np.uint8), np.eye(4), Path(tempfile.mkdtemp()) / "z.nii.gz")
    >>> p.name
    'z.nii.gz'
    """
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if description:
        img.header["descrip"] = description.encode()[:79]
    with atomic_path(final) as tmp:
        nib.save(img, tmp)
    return Path(final)
