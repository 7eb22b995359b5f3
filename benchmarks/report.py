"""``BENCHMARKS.md``: one section per benchmark, rows replaced or appended per machine.

Each benchmark's measurements live between two markers::

    <!-- bench:NAME:begin -->
    | variant | ... | date | machine | CPUs | torch | MONAI | command |
    |---|...
    <!-- bench:NAME:end -->

:func:`write_results` keeps everything outside the markers (the prose of the file is edited
by hand), replaces the rows measured again (same key columns, machine, CPU count, versions
and quick/full kind) and appends the new ones. A file that does not exist is created from
the benchmarks' descriptions.

Example:
    >>> from benchmarks.common import Result
    >>> r = Result(columns=["variant", "s"], key_columns=("variant",))
    >>> r.add(variant="a", s="1.0")
    >>> text = render_section([], r, {"date": "d", "machine": "m", "CPUs": "2", "torch": "t",
    ...                                "MONAI": "x", "command": "c"})
    >>> text.splitlines()[0]
    '| variant | s | date | machine | CPUs | torch | MONAI | command |'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from spleen_helpers.ground.files import atomic_path

from .common import CONTEXT_COLUMNS, Result

__all__ = ["NOT_MEASURED", "begin_marker", "end_marker", "parse_table", "read_section",
           "render_section", "template", "write_results"]

NOT_MEASURED = "_Not yet measured._"
NOTES_HEADING = "**Latest run:**"


def begin_marker(name: str) -> str:
    return f"<!-- bench:{name}:begin -->"


def end_marker(name: str) -> str:
    return f"<!-- bench:{name}:end -->"


def _cell(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ").strip()


def parse_table(lines: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of the first markdown table in ``lines`` (``[], []`` if none).

    >>> parse_table(["| a | b |", "|---|---|", "| 1 | 2 |"])
    (['a', 'b'], [{'a': '1', 'b': '2'}])
    """
    table = [ln.strip() for ln in lines if ln.strip().startswith("|")]
    if len(table) < 2:
        return [], []

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header = cells(table[0])
    rows = [dict(zip(header, cells(line))) for line in table[2:]]
    return header, [r for r in rows if len(r) == len(header)]


def read_section(text: str, name: str) -> list[str] | None:
    """The lines between a benchmark's markers, or None when the file has no such section."""
    match = re.search(re.escape(begin_marker(name)) + r"\n(.*?)" + re.escape(end_marker(name)), text, re.S)
    return None if match is None else match.group(1).splitlines()


def _is_quick(row: dict[str, str]) -> bool:
    return "--quick" in row.get("command", "")


def _key(row: dict[str, str], key_columns: Sequence[str]) -> tuple[str, ...]:
    cols = list(key_columns) + ["machine", "CPUs", "torch", "MONAI"]
    return tuple(row.get(c, "") for c in cols) + (str(_is_quick(row)),)


def render_section(old_lines: Sequence[str], result: Result, context: dict[str, str]) -> str:
    """The section's new text: old rows kept unless measured again, new rows, the notes."""
    header = list(result.columns) + CONTEXT_COLUMNS
    new_rows = [{**row, **context} for row in result.rows]
    _, old_rows = parse_table(old_lines)
    replaced = {_key(r, result.key_columns or result.columns[:1]) for r in new_rows}
    kept = [r for r in old_rows if _key(r, result.key_columns or result.columns[:1]) not in replaced]
    rows = kept + new_rows
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(r.get(c, "")) for c in header) + " |" for r in rows]
    if result.notes:
        out += ["", f"{NOTES_HEADING} {context['date']}, {context['machine']}, {context['CPUs']} CPUs "
                    f"(`{context['command']}`)", ""]
        out += [f"- {note}" for note in result.notes]
    return "\n".join(out) + "\n"


def template(modules: Sequence[ModuleType]) -> str:
    """A fresh ``BENCHMARKS.md``: the title, how to run, and an empty section per benchmark."""
    parts = [
        "# Benchmarks",
        "",
        "Every figure below was measured by the benchmarks in `benchmarks/` on the machine named in",
        "its row (with the CPU count, torch and MONAI versions, the exact command and the date);",
        "none is typed in by hand. A section that says *not yet measured* has no figures yet.",
        "",
        "## How to reproduce",
        "",
        "```",
        "make bench                                  # all benchmarks, rows into BENCHMARKS.md",
        "python -m benchmarks                        # the same, in the course's environment",
        "python -m benchmarks --only efficiency      # one benchmark (course, efficiency, inference, memory, gpu, viewer, phantom, ddp)",
        "python -m benchmarks --model runs/course/best_metric_model.pth   # reuse a trained synthetic model",
        "python -m benchmarks --quick                # the seconds-long smoke CI runs (scratch file)",
        "python -m benchmarks.gpu_recipe --output BENCHMARKS.md          # GPU recipe (needs CUDA)",
        "```",
        "",
        "Run them on an otherwise idle machine: each benchmark measures its alternatives in one run",
        "(interleaved where it matters) so that ratios hold, but absolute times follow the load.",
        "A new run replaces the rows of the same machine, CPU count and versions, and keeps others.",
        "Targets are reported as met or not met; no test asserts a figure (CI runs only `--quick`).",
        "",
    ]
    for mod in modules:
        parts += [f"## {mod.TITLE}", "", mod.DESCRIPTION.strip(), "",
                  begin_marker(mod.NAME), NOT_MEASURED, end_marker(mod.NAME), ""]
    return "\n".join(parts)


def write_results(path: Path, results: dict[str, tuple[ModuleType, Result]], context: dict[str, str],
                  modules: Sequence[ModuleType]) -> Path:
    """Write ``results`` (benchmark name → (module, result)) into ``path``, atomically."""
    path = Path(path)
    text = path.read_text() if path.exists() else template(modules)
    for name, (mod, result) in results.items():
        old = read_section(text, name)
        if old is None:  # a section the file does not have yet goes at the end
            text = text.rstrip("\n") + "\n\n" + "\n".join(
                [f"## {mod.TITLE}", "", mod.DESCRIPTION.strip(), "", begin_marker(name), NOT_MEASURED,
                 end_marker(name)]) + "\n"
            old = [NOT_MEASURED]
        body = render_section(old, result, context)
        text = re.sub(re.escape(begin_marker(name)) + r"\n.*?" + re.escape(end_marker(name)),
                      lambda _m, b=body, n=name: begin_marker(n) + "\n" + b + end_marker(n), text, flags=re.S)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path
