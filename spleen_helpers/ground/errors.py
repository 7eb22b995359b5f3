"""Errors the course raises for bad input: one line, naming the file and what is wrong.

Every error a user can trigger with bad data, a bad checkpoint or a bad option is a
:class:`CourseError`. The CLI prints ``str(error)`` alone (no traceback) and exits 2;
notebooks show the same one-line message.

Example:
    >>> raise DataError("data/dataset.json", "is not valid JSON (line 3)")
    Traceback (most recent call last):
    ...
    spleen_helpers.ground.errors.DataError: data/dataset.json: is not valid JSON (line 3)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["CourseError", "DataError", "DicomError", "CheckpointError", "ConfigError", "quiet_logger"]


class CourseError(Exception):
    """Base class: a clear, one-line problem with something the user gave us."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.path}: {self.problem}" if path is not None else self.problem)


class DataError(CourseError):
    """A data set, image or label that cannot be used as it is."""


class DicomError(CourseError):
    """A DICOM file or series that cannot be grouped or converted safely."""


class CheckpointError(CourseError):
    """A checkpoint that is unsafe, corrupt or does not fit the model."""


class ConfigError(CourseError):
    """An option or parameter value that is out of range or unknown."""


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Raise the level of a library's logger for a block, then restore it.

    Libraries such as dicom2nifti, papermill and MONAI's downloader log several lines per
    problem; the course reports each problem once, in one line, so their logs are quietened
    while it calls them.
    """
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)
