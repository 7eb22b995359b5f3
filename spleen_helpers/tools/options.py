"""Argument types shared by the command line's parsers.

Example:
    >>> positive_int("3")
    3
"""

from __future__ import annotations

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
    """An integer of at least 1 from a command line (``argparse`` ``type=``).

    >>> positive_int("3")
    3
    """
    import argparse

    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value
