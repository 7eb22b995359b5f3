"""Choose the series to segment, and cut a series into chunks of N slices.

The rule: axial CT volumes only; the most slices; ties broken by the thinnest slice step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ...ground.errors import DicomError
from .series import ChunkPlan, DicomSeries, Notify, SkippedSeries, StudyScan, _notifier

__all__ = ["choose_ct_series", "select_series", "split_series"]


# ------------------------------------------------------------------------ choosing one
def choose_ct_series(series: Sequence[DicomSeries]) -> DicomSeries:
    """The series to segment: the documented rule of ``predict`` and the notebooks.

    Only axial CT volumes count (``Modality`` CT, slice normal closest to the head-foot
    axis); of those, the one with the most slices; ties go to the thinnest slice step, then
    to the lowest series number. Raises a one-line :class:`DicomError` when there is none.

    >>> from pathlib import Path

    >>> a = DicomSeries("1.1", Path("s"), (Path("a"),) * 40, tuple(range(40)), (0., 0., 0.),
    ...                 (1., 0., 0., 0., 1., 0.), (1., 1.), 1.0, 8, 8, modality="CT",
    ...                 series_number=2)
    >>> b = replace(a, uid="1.2", series_number=3, slice_step=0.5)
    >>> choose_ct_series([a, b]).series_number
    3
    """
    candidates = [s for s in series if s.modality.upper() == "CT" and s.is_axial]
    if not candidates:
        folder = series[0].folder if series else None
        found = "; ".join(f"{s.label()} ({s.modality or 'no modality'}, "
                          f"{'axial' if s.is_axial else 'not axial'})" for s in series)
        raise DicomError(folder, f"no axial CT volume to segment among {len(series)} series"
                                 + (f": {found}" if found else ""))
    return min(candidates, key=lambda s: (-s.num_slices, round(s.slice_step, 4),
                                          s.series_number if s.series_number is not None else 1 << 30,
                                          s.uid))


def select_series(found: StudyScan | Sequence[DicomSeries], key: str | int | None = None) -> DicomSeries:
    """The series ``key`` names (its SeriesInstanceUID or series number), or by default the
    one :func:`choose_ct_series` picks. A one-line :class:`DicomError` says why when ``key``
    matches nothing, several series, or a series that was skipped.

    >>> from pathlib import Path

    >>> a = DicomSeries("1.2.3", Path("s"), (Path("a"),) * 8, tuple(range(8)), (0., 0., 0.),
    ...                 (1., 0., 0., 0., 1., 0.), (1., 1.), 1.0, 8, 8, series_number=4)
    >>> select_series([a], "4").uid, select_series([a], "1.2.3").series_number
    ('1.2.3', 4)
    """
    series = list(found.series) if isinstance(found, StudyScan) else list(found)
    skipped = list(found.skipped) if isinstance(found, StudyScan) else []
    folder = found.folder if isinstance(found, StudyScan) else (series[0].folder if series else None)
    if key is None or str(key).strip() == "":
        return choose_ct_series(series)
    text = str(key).strip()

    def matches(s: DicomSeries | SkippedSeries) -> bool:
        return s.uid == text or (text.isdigit() and s.series_number == int(text))

    hits = [s for s in series if matches(s)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DicomError(folder, f"{len(hits)} series have number {text} "
                                 f"({'; '.join(s.label() for s in hits)}); give the SeriesInstanceUID")
    for s in skipped:
        if matches(s):
            raise DicomError(folder, f"{s.label()} was skipped: {s.reason}")
    known = ", ".join(f"#{s.series_number}" if s.series_number is not None else s.uid for s in series)
    raise DicomError(folder, f"no series with number or SeriesInstanceUID {text}; the volumes "
                             f"here are: {known or 'none'}")


# ------------------------------------------------------------------------------ chunking
def _subseries(series: DicomSeries, start: int, stop: int, chunk: int) -> DicomSeries:
    # origin of the chunk = the series origin moved ``start`` slice steps along the stack
    origin = np.array(series.origin) + series.step * start
    return replace(series, files=series.files[start:stop], positions=series.positions[start:stop],
                   frames=series.frames[start:stop] if series.frames else (),
                   origin=tuple(float(v) for v in origin), chunk=chunk)


def split_series(series: DicomSeries, slices_per_group: int, *, drop_remainder: bool = False,
                 notify: Notify | None = None) -> ChunkPlan:
    """Cut ``series`` into consecutive chunks of ``slices_per_group`` slices (in position order).

    Unlike the source guide's ``int(len / number_slices)`` groups, the short last chunk is
    kept by default; either way a line (``notify``, else a :class:`DicomWarning`) says
    which chunk is short and whether it was kept or dropped, and the returned
    :class:`ChunkPlan` records it.

    >>> from pathlib import Path

    >>> s = DicomSeries("1.2", Path("."), tuple(Path(f"{i}.dcm") for i in range(20)),
    ...                 tuple(2.0 * i for i in range(20)), (0.0, 0.0, 0.0),
    ...                 (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (1.0, 1.0), 2.0, 8, 8)
    >>> split_series(s, 8, notify=print).sizes
    .: series uid ...1.2: 20 slices in groups of 8 -> 8, 8, 4; chunk 3 is short (4 slices), kept
    (8, 8, 4)
    """
    if int(slices_per_group) < 1:
        raise DicomError(series.folder, f"slices_per_group must be >= 1, got {slices_per_group}")
    size = int(slices_per_group)
    n_full, remainder = divmod(series.num_slices, size)
    bounds = [(i * size, (i + 1) * size) for i in range(n_full)]
    if remainder and not drop_remainder:
        bounds.append((n_full * size, series.num_slices))
    chunks = tuple(_subseries(series, a, b, k + 1) for k, (a, b) in enumerate(bounds))
    plan = ChunkPlan(series=series, slices_per_group=size, chunks=chunks, remainder=remainder,
                     dropped=bool(remainder and drop_remainder))
    if remainder:
        _notifier(notify)(f"{series.folder}: {plan.summary()}")
    return plan
