"""Settings side by side, differences marked, for notebooks that compare configurations.

Example:
    >>> from spleen_helpers.ground.settings import CourseConfig
    >>> "pixdim" in settings_side_by_side({"phantom": CourseConfig.synthetic(), "real": CourseConfig()})
    True
"""

from __future__ import annotations

import dataclasses

from ..ground.settings import CourseConfig

__all__ = ["settings_side_by_side"]


def settings_side_by_side(configs: dict[str, CourseConfig], only_different: bool = False) -> str:
    """A plain-text table of settings, one column per configuration, differences marked ``*``.

    Notebooks print it rather than stating a setting in prose.

    >>> print(settings_side_by_side({"phantom": CourseConfig.synthetic(), "real data": CourseConfig()},
    ...                             only_different=True).splitlines()[3])
    *  pixdim         (2.5, 2.5, 6.0)  (1.5, 1.5, 2.0)
    """
    names = list(configs)
    rows = []
    for f in dataclasses.fields(CourseConfig):
        if "help" not in f.metadata:
            continue
        values = [getattr(cfg, f.name) for cfg in configs.values()]
        differ = any(v != values[0] for v in values[1:])
        if differ or not only_different:
            rows.append(["*" if differ else " ", f.name] + [str(v) for v in values])
    header = [" ", "setting"] + names
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
