"""Download the real Task09 spleen data set: checked (md5), unpacked, moved into place atomically.

Example (downloads about 1.5 GB)::

    data_dir = download_msd_spleen("~/data")   # -> ~/data/Task09_Spleen
"""

from __future__ import annotations

import os
import re
import urllib.error
import warnings
from pathlib import Path
from urllib.parse import urlparse

from ..ground.errors import ConfigError, DataError, quiet_logger
from ..ground.files import earlier_download, file_md5, staged_download
from .dataset import MSD_SPLEEN_TASK, find_dataset

__all__ = ["MSD_SPLEEN_URL", "MSD_SPLEEN_MD5", "download_msd_spleen"]


# The archive and checksum MONAI's DecathlonDataset uses for Task09_Spleen
# (monai.apps.DecathlonDataset.resource / .md5).
MSD_SPLEEN_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task09_Spleen.tar"


MSD_SPLEEN_MD5 = "410d4a301da4e5b2f6f86ec3ddba524e"


# --------------------------------------------------------------------------------- download
def _download_root(root: str | os.PathLike) -> Path:
    """``root`` as an absolute folder, created when missing; DataError when it cannot be one."""
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(root, "download root is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(root, f"cannot create the download folder ({exc.strerror or exc})") from exc
    return root.resolve()


def _fetch_archive(url: str, archive: Path, target: Path, progress: bool) -> None:
    """Download ``url`` to ``archive`` with MONAI's ``download_url``; any failure is a one-line DataError."""
    from monai.apps.utils import download_url

    try:
        with warnings.catch_warnings():
            # the md5 is checked right below, to report both checksums on a mismatch
            warnings.filterwarnings("ignore", message="No hash value provided")
            download_url(url=url, filepath=archive, hash_val=None, progress=progress)
    except urllib.error.HTTPError as exc:
        raise DataError(target, f"download from {url} failed: the server answered HTTP "
                                f"{exc.code} {exc.reason}") from exc
    except urllib.error.ContentTooShortError as exc:
        raise DataError(target, f"download from {url} was cut short (network unreachable or "
                                "interrupted); run the download again") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError) as exc:
        # RuntimeError: MONAI's "failed due to network issue or denied permission"
        reason = getattr(exc, "reason", None) or exc
        raise DataError(target, f"download from {url} failed: network unreachable "
                                f"({reason})") from exc
    except OSError as exc:  # the local side: disk full, no permission, ...
        raise DataError(target, f"download from {url} failed while saving it "
                                f"({exc.strerror or exc})") from exc
    if not archive.is_file():  # MONAI's download_url swallows some permission errors
        raise DataError(target, f"download from {url} failed: no file was written to {archive.parent}")


def _unpack(archive: Path, url: str, md5: str) -> Path:
    """The checked ``Task09_Spleen/`` folder extracted from ``archive`` (md5 checked first) beside it."""
    from monai.apps.utils import extractall

    archive_name = archive.name
    actual = file_md5(archive)
    if actual != md5.lower():
        archive.unlink()
        raise DataError(archive_name, f"md5 {actual} does not match the expected {md5} (the "
                                      f"archive from {url} is corrupt or incomplete and was "
                                      "deleted; nothing was extracted)")
    extracted = archive.parent / "extracted"
    try:
        extractall(filepath=archive, output_dir=extracted, has_base=True)
    except (OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise DataError(archive_name, f"(from {url}) cannot be extracted ({exc})") from exc
    archive.unlink()
    unpacked = extracted / MSD_SPLEEN_TASK
    if not unpacked.is_dir():
        raise DataError(archive_name, f"(from {url}) does not contain a {MSD_SPLEEN_TASK}/ folder")
    try:
        find_dataset(unpacked)
    except DataError as exc:
        raise DataError(archive_name, f"(from {url}) does not hold a usable data set: "
                                      f"{exc.problem}") from exc
    return unpacked


def download_msd_spleen(root: str | os.PathLike, url: str = MSD_SPLEEN_URL, md5: str = MSD_SPLEEN_MD5,
                        progress: bool = True) -> Path:
    """Download and extract MSD Task09 Spleen into ``root/Task09_Spleen``; return that folder.

    Does nothing when ``root/Task09_Spleen`` already passes :func:`find_dataset`. The
    archive (about 1.5 GB) is downloaded with MONAI's ``download_url`` (progress bar) into
    a temporary folder beside the target, its md5 is checked, it is extracted there with
    MONAI's ``extractall``, checked, and only then renamed into place, so an interrupted or
    corrupt download never leaves a ``Task09_Spleen`` folder behind. A wrong md5 deletes
    the archive and raises DataError with both checksums; no network raises DataError
    naming the URL.

    Example (downloads the real data set)::

        data_dir = download_msd_spleen("~/data")   # -> ~/data/Task09_Spleen
    """
    import monai.apps.utils  # noqa: F401 -- first, as before: importing it sets MONAI's logger to INFO

    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5 or ""):
        raise ConfigError(None, f"md5 must be 32 hexadecimal digits, got {md5!r}")
    root = _download_root(root)
    target = root / MSD_SPLEEN_TASK
    if target.is_dir() and next(target.iterdir(), None) is None:
        target.rmdir()  # an empty folder holds nothing to lose
    found = earlier_download(target, find_dataset, DataError,
                             "exists but is not a complete data set ({exc}); delete it or choose another "
                             "root, then download again", chain=True)
    if found is not None:
        print(f"{MSD_SPLEEN_TASK} is already in {found}; nothing to download")
        return found

    archive_name = Path(urlparse(url).path).name or f"{MSD_SPLEEN_TASK}.tar"
    # MONAI logs its own multi-line account of each step and failure; this function reports
    # in one line (print or DataError), so MONAI's logger is quietened meanwhile.
    with staged_download(root, MSD_SPLEEN_TASK) as staging, quiet_logger("monai.apps"):
        archive = staging / archive_name
        print(f"downloading {url} to {root}")
        _fetch_archive(url, archive, target, progress)
        unpacked = _unpack(archive, url, md5)
        try:
            os.replace(unpacked, target)  # atomic: the data set appears complete or not at all
        except OSError as exc:
            raise DataError(target, f"cannot move the extracted data set into place "
                                    f"({exc.strerror or exc})") from exc
    print(f"{MSD_SPLEEN_TASK} is ready in {target}")
    return target
