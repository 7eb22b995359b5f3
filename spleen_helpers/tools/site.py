"""The course as a static web site: every executed notebook of a course run, browsable.

:func:`build_site` takes the output folder of a course run (``spleen-course run-course``,
``make course``: the executed ``NN_name.ipynb`` and ``summary.json``) and builds with Sphinx
and MyST-NB, never executing a notebook again, a site of plain HTML files:

* ``index.html``: the course map (each notebook with what it teaches, its status and time in
  the run) and the run it was built from -- date, versions, data, final Dice -- all read from
  the run (``summary.json``, the run's ``config.json``, the notebooks' own outputs);
* one page per executed notebook with its outputs and figures; where an output is a widget
  with a picture beside it (the slice viewer) the picture is shown, a widget alone becomes a
  note; solutions (cells tagged ``solution``) are collapsed, as in JupyterLab;
* the glossary (``docs/glossary.md``) and the README's set-up, command-line and
  troubleshooting sections, with Sphinx's search over all of it.

The site is built in a folder beside ``out`` and moved into place when complete; an earlier
site there is replaced only when it holds the marker :data:`SITE_MARKER`.

Example:
    >>> report = build_site("runs/course", "runs/site")        # doctest: +SKIP
    >>> report.index                                            # doctest: +SKIP
    PosixPath('runs/site/index.html')
    >>> rewrite_links("see [the map](docs/x.md) or [01](notebooks/01_a.ipynb)", {"01_a.ipynb"}, "https://e.org/r")
    'see [the map](https://e.org/r/blob/main/docs/x.md) or [01](01_a.ipynb)'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ground.errors import ConfigError, CourseError, DataError
from ..ground.files import atomic_path
from ..ground.paths import PACKAGE_DIR, RunLayout, course_home

__all__ = ["SITE_MARKER", "README_SECTIONS", "RunStamp", "SiteReport", "read_run_stamp", "prepare_notebook",
           "readme_section", "rewrite_links", "build_site"]

SITE_MARKER = ".spleen-course-site"   # in a site build_site wrote (only such a folder is replaced)

#: Site page name, README heading and page title of each README section on the site.
README_SECTIONS = (("setup", "Running the notebooks", "Set-up"),
                   ("cli", "Command line", "Command line"),
                   ("troubleshooting", "Troubleshooting", "Troubleshooting"))

REPOSITORY_URL = "https://github.com/spleen-course/spleen-course"   # pyproject.toml's Homepage (a test holds them equal)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "*(An interactive widget: run the notebook in JupyterLab to use it.)*"
_VERSIONS_LINE = re.compile(r"^[\w.-]+ \d[\w.+-]*( \| [\w.-]+ \d[\w.+-]*)+$")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")

Progress = Callable[[str], None]


# ------------------------------------------------------------------------------ the run
@dataclass
class RunStamp:
    """What the site says about the run it shows, every value read from the run itself."""

    started: str | None = None              # papermill's start time of the first notebook (UTC)
    finished: str | None = None             # its end time of the last one
    versions: dict[str, str] = field(default_factory=dict)
    data: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    final_val_dice: float | None = None
    best_val_dice: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    notebooks: list[dict[str, Any]] = field(default_factory=list)   # summary.json's entries

    def markdown(self) -> str:
        """The run as a short Markdown list (the home page's "The run shown here")."""
        when = _day_and_time(self.started) or "unknown (no papermill times in the notebooks)"
        if self.finished and _day_and_time(self.finished) != when:
            when += f" to {_day_and_time(self.finished)}"
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items()) or "not printed by the notebooks"
        if self.final_val_dice is not None:
            dice = (f"**{self.final_val_dice:.4f}** (best {self.best_val_dice:.4f} at epoch "
                    f"{self.best_epoch}, {self.epochs} epochs trained)")
        else:
            dice = "none (no notebook of this run trained a model)"
        params = ", ".join(f"`{k} = {v!r}`" for k, v in self.parameters.items()) or "the notebooks' defaults"
        return "\n".join([f"- run: {when}", f"- versions: {versions}", f"- data: {self.data}",
                          f"- parameters: {params}", f"- final validation Dice: {dice}", ""])


def _day_and_time(stamp: str | None) -> str | None:
    """``"2026-12-05 07:32 UTC"`` from papermill's ISO time stamp."""
    if not stamp:
        return None
    return f"{stamp[:10]} {stamp[11:16]} UTC" if len(stamp) >= 16 else stamp


def _read_summary(run: Path) -> dict[str, Any]:
    path = run / "summary.json"
    if not path.is_file():
        raise DataError(run, "no summary.json: not the output folder of a course run (run `make course` "
                             "or `spleen-course run-course --output-dir DIR` first)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(path, f"is not readable JSON ({exc})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("notebooks"), list):
        raise DataError(path, "has no list of notebooks: not a course run's summary")
    return summary


def _data_line(summary: dict[str, Any]) -> str:
    """Phantom or real data, from the run directory's config.json, else from the summary."""
    config = RunLayout(Path(summary.get("run_dir") or "")).config_json
    try:
        trained = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        trained = {}
    data_dir = summary.get("data_dir") or trained.get("data_dir")
    if trained.get("profile") == "synthetic":
        kind = "the synthetic CT phantom"
    elif trained.get("profile"):
        kind = "real CT data"
    else:
        kind = "each notebook's default (the synthetic phantom and the course's real sample CT)"
    return f"{kind} (`{data_dir}`)" if data_dir and trained.get("profile") else kind


def executed_notebooks(run: Path, summary: dict[str, Any]) -> list[Path]:
    """The executed notebooks the summary names that are in ``run`` (by name, so a moved run works)."""
    found = [run / Path(entry["notebook"]).name for entry in summary["notebooks"]
             if entry.get("status") != "not run"]
    return [p for p in found if p.is_file()]


def _notebook_versions(nb: Any) -> dict[str, str]:
    """``{"monai": "1.6.1", ...}`` from a printed ``name version | name version`` line, plus Python."""
    versions: dict[str, str] = {}
    python = nb.metadata.get("language_info", {}).get("version")
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for line in str(output.get("text", "")).splitlines():
                if _VERSIONS_LINE.match(line.strip()):
                    for part in line.strip().split(" | "):
                        name, version = part.split(" ", 1)
                        versions.setdefault(name, version)
    return versions | ({"python": python} if python else {})


def read_run_stamp(run_dir: str | os.PathLike) -> RunStamp:
    """The facts of a course run the site states: times, versions, data, parameters, Dice."""
    import nbformat

    run = Path(run_dir)
    summary = _read_summary(run)
    stamp = RunStamp(data=_data_line(summary), parameters=dict(summary.get("parameters") or {}),
                     final_val_dice=summary.get("final_val_dice"), best_val_dice=summary.get("best_val_dice"),
                     best_epoch=summary.get("best_epoch"), epochs=summary.get("epochs"),
                     notebooks=list(summary["notebooks"]))
    for path in executed_notebooks(run, summary):
        nb = nbformat.read(path, as_version=4)
        times = nb.metadata.get("papermill", {})
        stamp.started = stamp.started or times.get("start_time")
        stamp.finished = times.get("end_time") or stamp.finished
        for name, version in _notebook_versions(nb).items():
            stamp.versions.setdefault(name, version)
    return stamp


# ---------------------------------------------------------------------------- notebooks
def _site_output(output: Any) -> Any:
    """An output as the site shows it: a widget's picture without the widget, a lone widget as a note."""
    data = output.get("data") if output.get("output_type") in {"display_data", "execute_result"} else None
    if not data or WIDGET_VIEW not in data:
        return output
    pictures = {k: v for k, v in data.items() if k.startswith("image/")}
    output["data"] = pictures or {"text/markdown": WIDGET_NOTE}
    return output


def prepare_notebook(executed: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy an executed notebook for the site: solutions tagged ``hide-input`` (collapsed,
    as JupyterLab shows them), widgets replaced by their pictures, widget state dropped.

    >>> import nbformat, tempfile
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", metadata={"tags": ["solution"]})])
    >>> folder = Path(tempfile.mkdtemp()); nbformat.write(nb, folder / "a.ipynb")
    >>> nbformat.read(prepare_notebook(folder / "a.ipynb", folder / "b.ipynb"), 4).cells[0].metadata.tags
    ['solution', 'hide-input']
    """
    import nbformat

    nb = nbformat.read(Path(executed), as_version=4)
    nb.metadata.pop("widgets", None)   # the widgets' state: megabytes, and nothing runs it here
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        hidden = cell.metadata.get("jupyter", {}).get("source_hidden", False)
        if ("solution" in tags or hidden) and "hide-input" not in tags:
            cell.metadata["tags"] = tags + ["hide-input"]
        if cell.cell_type == "code":
            cell.outputs = [_site_output(o) for o in cell.outputs]
    with atomic_path(dest) as tmp:
        nbformat.write(nb, tmp)
    return Path(dest)


def _first_heading(path: Path) -> str:
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


# ------------------------------------------------------------------------------ markdown
def rewrite_links(text: str, pages: Iterable[str], repository: str = REPOSITORY_URL,
                  base: str = "") -> str:
    """Relative links of a Markdown file of the repository (in folder ``base``) made to work on
    the site: a course notebook that is a page of the site links to that page, anything else
    to the repository (pictures to their raw file)."""
    pages = set(pages)

    def one(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        if Path(path).name in pages and path.endswith(".ipynb"):
            return f"{bang}[{label}]({Path(path).name}{'#' + anchor if anchor else ''})"
        full = os.path.normpath(os.path.join(base, path)).replace(os.sep, "/")
        return f"{bang}[{label}]({repository}/{'raw' if bang else 'blob'}/main/{full}{'#' + anchor if anchor else ''})"

    return _LINK.sub(one, text)


def readme_section(readme: str, heading: str) -> str | None:
    """The body of the README's ``## heading`` section (its ``###`` subsections included), or None."""
    lines = readme.splitlines()
    try:
        start = lines.index(f"## {heading}")
    except ValueError:
        return None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start + 1:end]).strip() + "\n"


def _course_map_rows(readme: str) -> dict[str, str]:
    """``{"01_dicom_nifti_basics.ipynb": "what you learn"}`` from the README's course map."""
    rows: dict[str, str] = {}
    for line in (readme_section(readme, "Course map") or "").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        link = re.search(r"\(notebooks/([^)]+\.ipynb)\)", cells[1]) if len(cells) >= 3 else None
        if link:
            rows[link.group(1)] = cells[2]
    return rows


def _home_page(stamp: RunStamp, titles: dict[str, str], learn: dict[str, str],
               extra_pages: list[tuple[str, str]]) -> str:
    """The Markdown of ``index.md``: course map, the run, the other pages, the toctree."""
    lines = ["# spleen-course: 3-D spleen segmentation, hands on", "",
             "Every notebook of the course as it ran, with its outputs and figures: read before "
             "you run. Solutions are collapsed; open them after you have tried.", "",
             "## Course map", "", "| # | Notebook | What you learn | In this run |", "|---|---|---|---|"]
    by_name = {Path(n["notebook"]).name: n for n in stamp.notebooks}
    for name, title in titles.items():
        entry = by_name.get(name, {})
        secs = entry.get("seconds")
        status = f"{entry.get('status', '?')}{f', {secs:.0f} s' if secs is not None else ''}"
        lines.append(f"| {name[:2]} | [{title}]({name}) | {learn.get(name, '')} | {status} |")
    lines += ["", "## The run shown here", "", stamp.markdown(), "## More", ""]
    lines += [f"- [{title}]({page}.md)" for page, title in extra_pages]
    toc = list(titles) + [f"{page}.md" for page, _ in extra_pages]
    lines += ["", "```{toctree}", ":hidden:", ":maxdepth: 1", "", *toc, "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the build
CONF_PY = '''\
# Written by spleen_helpers.tools.site: Sphinx with MyST-NB, notebooks shown as executed.
project = "spleen-course"
author = "the spleen-course authors"
html_title = "spleen-course"
extensions = ["myst_nb", "sphinx.ext.githubpages"]
nb_execution_mode = "off"              # never run a notebook again: show the course run
nb_ipywidgets_js = {{}}                # no widget JavaScript from a CDN: the site works offline
nb_mime_priority_overrides = [("html", "image/png", 1), ("html", "image/jpeg", 2)]
myst_enable_extensions = ["dollarmath", "amsmath", "deflist", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "myst.xref_missing", "mystnb.unknown_mime_type"]
exclude_patterns = [".doctrees"]
html_theme = "sphinx_book_theme"
html_theme_options = {{"repository_url": {repository!r}, "use_repository_button": True,
                      "use_download_button": False,
                      "show_toc_level": 2}}
html_show_sourcelink = False
html_copy_source = False
'''


@dataclass
class SiteReport:
    """What :func:`build_site` built: the site folder, its pages and Sphinx's warnings."""

    out: Path
    pages: list[str]
    warnings: list[str]
    glossary: Path | None

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def _checkout_file(relative: str) -> Path | None:
    for root in (course_home(), PACKAGE_DIR.parent):
        if (root / relative).is_file():
            return root / relative
    return None


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_sources(src: Path, run: Path, readme: Path | None, glossary: Path | None,
                   repository: str) -> list[str]:
    """Fill the Sphinx source folder; return the site's pages (source names)."""
    stamp = read_run_stamp(run)
    notebooks = executed_notebooks(run, _read_summary(run))
    if not notebooks:
        raise DataError(run, "summary.json names no executed notebook that is in this folder")
    names = {p.name for p in notebooks}
    titles = {}
    for path in notebooks:
        prepare_notebook(path, src / path.name)
        titles[path.name] = _first_heading(path)
    readme_text = readme.read_text(encoding="utf-8") if readme else ""
    extra: list[tuple[str, str]] = []
    for page, heading, title in README_SECTIONS:
        body = readme_section(readme_text, heading)
        if body is not None:
            _write_text(src / f"{page}.md", f"# {title}\n\n{rewrite_links(body, names, repository)}")
            extra.append((page, title))
    if glossary is not None:
        text = rewrite_links(glossary.read_text(encoding="utf-8"), names, repository, base="docs")
        if not text.lstrip().startswith("# "):
            text = f"# Glossary\n\n{text}"
    else:
        text = "# Glossary\n\nThis checkout has no `docs/glossary.md` yet.\n"
    _write_text(src / "glossary.md", text)
    extra.append(("glossary", "Glossary"))
    _write_text(src / "index.md", _home_page(stamp, titles, _course_map_rows(readme_text), extra))
    _write_text(src / "conf.py", CONF_PY.format(repository=repository))
    return ["index.md", *titles, *(f"{page}.md" for page, _ in extra)]


def _sphinx(src: Path, html: Path) -> list[str]:
    """Run Sphinx's HTML builder in a child process; its warnings, or a CourseError."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(src / ".doctrees"), str(src), str(html)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if done.returncode != 0:
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise CourseError(src, f"Sphinx could not build the site: {last}")
    return [line for line in lines if "WARNING" in line or "ERROR" in line]


def _check_replaceable(out: Path) -> None:
    """Refuse an ``out`` that holds anything but an earlier site (one with :data:`SITE_MARKER`)."""
    if not out.exists():
        return
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else [out.name]
    if held and not (out / SITE_MARKER).is_file():
        raise ConfigError(out, f"holds {', '.join(held[:5])} but no {SITE_MARKER}: not a site "
                               "this command built; choose another --out or empty it yourself")


def _replace(out: Path, built: Path) -> None:
    """Put the built site at ``out`` in place of an earlier one."""
    _check_replaceable(out)
    if out.is_dir():
        shutil.rmtree(out)
    os.replace(built, out)


def build_site(run_dir: str | os.PathLike, out: str | os.PathLike, readme: str | os.PathLike | None = None,
               glossary: str | os.PathLike | None = None, progress: Progress | None = None) -> SiteReport:
    """Build the static course site of the course run in ``run_dir`` into ``out``.

    ``readme`` and ``glossary`` default to the checkout's ``README.md`` and
    ``docs/glossary.md``; a glossary that is not there yet gives a page that says so.
    Raises DataError when ``run_dir`` is no course run, ConfigError when ``out`` holds
    something other than an earlier site, CourseError when Sphinx fails.
    """
    say = progress or (lambda _line: None)
    run, out = Path(run_dir).resolve(), Path(out).resolve()
    readme_path = Path(readme) if readme else _checkout_file("README.md")
    glossary_path = Path(glossary) if glossary else _checkout_file("docs/glossary.md")
    if glossary_path is not None and not glossary_path.is_file():
        raise DataError(glossary_path, "the glossary file does not exist")
    _check_replaceable(out)
    if glossary_path is None:
        say("warning: no docs/glossary.md in this checkout: the glossary page says so")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        src, html = staging / "source", staging / "html"
        src.mkdir()
        pages = _write_sources(src, run, readme_path, glossary_path, REPOSITORY_URL)
        say(f"building {len(pages)} pages with Sphinx and MyST-NB ...")
        warnings = _sphinx(src, html)
        _write_text(html / SITE_MARKER, f"A course site built by spleen-course site from {run}.\n")
        _replace(out, html)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SiteReport(out=out, pages=pages, warnings=warnings, glossary=glossary_path)
