"""Run the whole course headless: every notebook, in order, with papermill.

:func:`run_course` executes ``notebooks/NN_*.ipynb`` one after the other in a fresh kernel
each, injects parameters into each notebook's cell tagged ``parameters``, and writes into
``output_dir``:

* each executed notebook (``NN_name.ipynb``) and an HTML rendering of it (``NN_name.html``);
* ``run/``: the one run directory that every notebook defining ``run_dir`` receives, so the
  evaluation notebook finds the model the training notebook wrote (a run directory the
  runner creates holds the marker ``.spleen-course-run``; ``fresh=True`` empties only those);
* ``outputs/NN_name/``: the ``output_dir`` of each notebook that defines one;
* ``summary.json`` and ``summary.md``: status and time per notebook, and the validation Dice
  read from ``run/history.json`` (the training history), never from notebook text.

Parameters go only to the notebooks whose ``parameters`` cell assigns that name; a name that
no selected notebook defines is a :class:`~spleen_helpers.ground.errors.ConfigError` (papermill
itself only warns). A failing cell stops the course: the notebook is marked failed in the
summary and a :class:`~spleen_helpers.ground.errors.CourseError` names the executed notebook and the
cell's error in one line.

Example:
    >>> summary = run_course("runs/course", parameters={"max_epochs": 3})   # doctest: +SKIP
    >>> summary.final_val_dice                                               # doctest: +SKIP
    0.41
    >>> parse_parameter_value("3"), parse_parameter_value("data/x"), parse_parameter_value("None")
    (3, 'data/x', None)
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
import re
import shutil
import threading
import time
import tokenize
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..ground.errors import ConfigError, CourseError, DataError, quiet_logger
from ..ground.files import atomic_path, write_json_atomic
from ..ground.paths import PACKAGE_DIR, RunLayout, course_home, default_runs_dir

__all__ = ["DEFAULT_CELL_TIMEOUT_S", "PROGRESS_EVERY_S", "RUN_DIR_PARAMETER", "DATA_DIR_PARAMETER", "OUTPUT_DIR_PARAMETER", "RUN_DIR_MARKER", "NotebookParameter", "NotebookResult", "CourseSummary", "course_notebooks", "select_notebooks", "notebook_parameters", "parse_parameter_value", "run_course"]


DEFAULT_CELL_TIMEOUT_S = 3600.0  # per cell; papermill's own default waits forever


PROGRESS_EVERY_S = 8.0           # a line at least this often while a notebook runs


RUN_DIR_PARAMETER = "run_dir"        # the shared run directory (training writes, evaluation reads)


DATA_DIR_PARAMETER = "data_dir"      # the data set every notebook works on


OUTPUT_DIR_PARAMETER = "output_dir"  # a notebook's own outputs: <output_dir>/outputs/<notebook>


NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"


RUN_DIR_MARKER = ".spleen-course-run"  # in a run directory run_course created (only those are emptied)


Progress = Callable[[str], None]


@dataclass(frozen=True)
class NotebookParameter:
    """One assignment of a notebook's ``parameters`` cell: name, default source text, comment."""

    name: str
    default: str
    help: str = ""

    def literal_default(self) -> Any:
        """The default as a Python value when it is a literal, else the source text."""
        try:
            return ast.literal_eval(self.default)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return self.default


@dataclass
class NotebookResult:
    """What happened to one notebook of a course run."""

    notebook: str
    status: str = "not run"            # "ok", "failed" or "not run"
    seconds: float | None = None
    executed: str | None = None        # path of the executed notebook
    html: str | None = None            # path of its HTML rendering
    parameters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    val_dice: float | None = None      # last validation Dice, when this notebook wrote history.json
    best_val_dice: float | None = None


@dataclass
class CourseSummary:
    """The outcome of :func:`run_course`; also written as ``summary.json`` and ``summary.md``."""

    output_dir: str
    run_dir: str
    data_dir: str | None
    parameters: dict[str, Any]
    cell_timeout_s: float
    notebooks: list[NotebookResult] = field(default_factory=list)
    total_seconds: float = 0.0
    final_val_dice: float | None = None   # the last validation Dice of the run's history.json
    best_val_dice: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    history_problem: str | None = None    # why the run's history.json could not be read

    @property
    def ok(self) -> bool:
        """True when every selected notebook ran without error."""
        return all(r.status == "ok" for r in self.notebooks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def to_markdown(self) -> str:
        """A short human-readable report (the content of ``summary.md``)."""
        lines = ["# Course run", "",
                 f"- outputs: `{self.output_dir}`",
                 f"- run directory: `{self.run_dir}`",
                 f"- data: {f'`{self.data_dir}`' if self.data_dir else 'each notebook’s default (the synthetic phantom)'}",
                 f"- parameters: {self.parameters or 'none'}",
                 f"- per-cell timeout: {self.cell_timeout_s:g} s", "",
                 "| notebook | status | time (s) | val Dice | HTML |",
                 "|---|---|---:|---:|---|"]
        for r in self.notebooks:
            secs = "" if r.seconds is None else f"{r.seconds:.1f}"
            dice = "" if r.val_dice is None else f"{r.val_dice:.4f}"
            html = f"[{Path(r.html).name}]({Path(r.html).name})" if r.html else ""
            lines.append(f"| {r.notebook} | {r.status} | {secs} | {dice} | {html} |")
        lines += ["", f"Total time: {self.total_seconds:.1f} s."]
        if self.final_val_dice is not None:
            lines.append(f"Final validation Dice: {self.final_val_dice:.4f} (best "
                         f"{self.best_val_dice:.4f} at epoch {self.best_epoch}, "
                         f"{self.epochs} epochs trained).")
        else:
            lines.append(self.history_problem or "No training history in the run directory.")
        for r in self.notebooks:
            if r.error:
                lines.append(f"\n**{r.notebook} failed:** {r.error}")
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ notebooks
def course_notebooks(notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` of the course, in order.

    >>> [p.name[:2] for p in course_notebooks()][:1]
    ['01']
    """
    if notebooks_dir:
        folders = [Path(notebooks_dir)]
    else:  # the course home, then the checkout this package was imported from
        folders = [course_home() / "notebooks", PACKAGE_DIR.parent / "notebooks"]
    for folder in folders:
        found = sorted(folder.glob(NOTEBOOK_PATTERN))
        if found:
            return found
    raise DataError(folders[0], f"no course notebooks ({NOTEBOOK_PATTERN}) here; set "
                                "SPLEEN_COURSE_HOME to a checkout of the course")


def select_notebooks(selectors: Sequence[str | os.PathLike] | None,
                     notebooks_dir: str | os.PathLike | None = None) -> list[Path]:
    """Resolve ``--only`` selectors: ``"03"``, ``"3"``, a stem, a file name, or a path to a notebook.

    >>> [p.name for p in select_notebooks(["1"])]
    ['01_dicom_nifti_basics.ipynb']
    """
    if not selectors:
        return course_notebooks(notebooks_dir)
    chosen: list[Path] = []
    for sel in selectors:
        text = str(sel)
        as_path = Path(text)
        if as_path.suffix == ".ipynb" and as_path.is_file():
            path = as_path.resolve()
        else:
            available = course_notebooks(notebooks_dir)
            key = text.zfill(2) if text.isdigit() else text
            matches = [p for p in available if key in {p.name, p.stem, p.name[:2]}]
            if not matches:
                raise ConfigError(None, f"no course notebook matches {text!r}; available: "
                                        f"{[p.name for p in available]}")
            path = matches[0]
        if path not in chosen:
            chosen.append(path)
    return chosen


def _parameters_cell(nb: Any) -> Any | None:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return cells[0] if cells else None


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParameter]:
    """Names the ``parameters`` cell of a notebook assigns, with default source and comment.

    Parsed with :mod:`ast` (papermill's line-based parser skips assignments whose value is
    a call or whose comment has parentheses, and the course's parameters cells have both).

    >>> sorted(notebook_parameters(course_notebooks()[0]))[:2]
    ['case', 'cleanup']
    """
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"is not a readable notebook ({exc})") from None
    cell = _parameters_cell(nb)
    if cell is None:
        return {}
    source = cell.source
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(path, f"the parameters cell does not parse: line {exc.lineno}: {exc.msg}") from None
    comments: dict[int, str] = {}
    with contextlib.suppress(tokenize.TokenError):
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])
        for target in targets:
            if isinstance(target, ast.Name):
                default = ast.get_source_segment(source, node.value) or ""
                found[target.id] = NotebookParameter(target.id, default, comments.get(node.lineno, ""))
    return found


# ----------------------------------------------------------------------------- parameters
def parse_parameter_value(text: str) -> Any:
    """A command-line value as a Python literal when it is one, else the string itself.

    >>> parse_parameter_value("3"), parse_parameter_value("1e-3"), parse_parameter_value("True")
    (3, 0.001, True)
    >>> parse_parameter_value("[96, 96, 96]"), parse_parameter_value("'007'")
    ([96, 96, 96], '007')
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    try:
        return _injectable(value)
    except TypeError:
        return text  # e.g. a set or bytes literal: keep the text as the user typed it


def _injectable(value: Any) -> Any:
    """Values papermill writes faithfully into Python source (it turns a tuple into a string)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_injectable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _injectable(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} values cannot be injected into a notebook")


def _check_type(name: str, value: Any, param: NotebookParameter, notebook: Path) -> None:
    """Refuse text where a notebook's literal default is a number or a flag (a likely typo)."""
    default = param.literal_default()
    if isinstance(default, (bool, int, float)) and isinstance(value, str):
        kind = "True or False" if isinstance(default, bool) else "a number"
        raise ConfigError(notebook, f"parameter {name} expects {kind} (default {param.default}), "
                                    f"got {value!r}")


# ---------------------------------------------------------------------------------- helpers
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(_ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _write_html(executed: Path, html_path: Path) -> None:
    """The executed notebook as HTML that shows every output without a network connection.

    An interactive widget in HTML needs its JavaScript from a CDN (and a kernel to redraw),
    so where an output also carries a picture (the slice viewer shows its first view as PNG)
    the picture is preferred; a widget with nothing else still renders as a widget.
    """
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb = nbformat.read(executed, as_version=4)
    priority = list(HTMLExporter().default_config["NbConvertBase"]["display_data_priority"])
    pictures_first = [m for m in priority if m != _WIDGET_VIEW] + [_WIDGET_VIEW]
    exporter = HTMLExporter(config=Config({"NbConvertBase": {"display_data_priority": pictures_first}}))
    body, _ = exporter.from_notebook_node(nb)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")


def _history_stamp(run_dir: Path) -> int | None:
    try:
        return RunLayout(run_dir).history_json.stat().st_mtime_ns
    except OSError:
        return None


def _read_history(run_dir: Path, summary: CourseSummary):
    """The run's training history when it has a validation, else None (a bad file is noted)."""
    from ..engine.history import TrainingHistory

    if not RunLayout(run_dir).history_json.is_file():
        return None
    try:
        history = TrainingHistory.load(run_dir)
    except DataError as exc:
        summary.history_problem = str(exc)
        return None
    return history if history.val_dice else None


def _prepare_run_dir(run_dir: Path, fresh: bool) -> None:
    """Create the shared run directory (marked as the course's); with ``fresh``, empty it first.

    Only a folder the course runner created itself (it holds :data:`RUN_DIR_MARKER`) is ever
    deleted. A folder the user made or chose (``-p run_dir DIR``) that holds anything is
    refused with a ConfigError instead of emptied; an empty one is simply used.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(run_dir, "the run directory is a file, not a folder")
    if fresh and run_dir.exists():
        if (run_dir / RUN_DIR_MARKER).is_file():
            shutil.rmtree(run_dir)
        else:
            held = sorted(p.name for p in run_dir.iterdir())
            if held:
                shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
                raise ConfigError(run_dir, f"--fresh (fresh=True) would empty this folder, but run-course "
                                           f"did not create it (no {RUN_DIR_MARKER} in it) and it holds "
                                           f"{shown}; empty or remove it yourself, or choose another "
                                           "run directory")
    if not run_dir.exists():
        run_dir.mkdir(parents=True)
        with atomic_path(run_dir / RUN_DIR_MARKER) as tmp:
            tmp.write_text("This run directory was created by spleen-course run-course; "
                           "run-course --fresh may empty it.\n", encoding="utf-8")


def _write_summary(summary: CourseSummary, out: Path) -> None:
    write_json_atomic(summary.to_dict(), out / "summary.json")
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(summary.to_markdown(), encoding="utf-8")


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise ConfigError(None, f"no Jupyter kernel named {kernel_name!r}: run `make setup`, or "
                                "`python -m ipykernel install --sys-prefix --name python3` in "
                                "this environment") from None


def _running_cell(path: Path) -> str:
    """``"cell 23 of 40"`` for the cell papermill marks as running in its output notebook, or ``""``.

    papermill saves that notebook whenever a cell starts or ends (and every 30 s within a
    long one); a read that meets a half-written file just gives no cell this time.
    """
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    for number, cell in enumerate(cells, start=1):
        if cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
            return f"cell {number} of {len(cells)}"
    return ""


def _training_state(run_dir: Path) -> str:
    """``"training epoch 12/80, loss 0.4102, val Dice 0.8911 (epoch 10)"`` from the run's history."""
    from ..engine.history import TrainingHistory

    layout = RunLayout(run_dir)
    try:
        history = TrainingHistory.load(layout.history_json)
    except (DataError, OSError):
        return ""
    if not history.epochs:
        return ""
    try:
        total = f"/{int(json.loads(layout.config_json.read_text())['max_epochs'])}"
    except (OSError, ValueError, KeyError, TypeError):
        total = ""
    return (f"training epoch {history.last_epoch}{total}, loss {history.train_loss[-1]:.4f}"
            f"{history.describe_last(', ')}")


@contextlib.contextmanager
def _progress_lines(say: Progress, label: str, notebook: Path, run_dir: Path,
                    every: float) -> Iterator[None]:
    """While the block runs, say every ``every`` seconds how long ``label`` has run, which cell
    runs, and -- when the run directory's training history changed during it -- the epoch."""
    done = threading.Event()
    start = time.perf_counter()
    before = _history_stamp(run_dir)

    def beat() -> None:
        while not done.wait(every):
            parts = [f"{label}: {time.perf_counter() - start:.0f} s", _running_cell(notebook)]
            if _history_stamp(run_dir) != before:
                parts.append(_training_state(run_dir))
            say(", ".join(p for p in parts if p))

    thread = threading.Thread(target=beat, name="course-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _execute(nb_path: Path, executed: Path, params: dict[str, Any], cell_timeout: float,
             kernel_name: str, watch: Callable[[Path], Any] | None = None) -> str | None:
    """Run one notebook with papermill into ``executed``; return a one-line error or None.

    ``watch(output)`` is a context manager entered while papermill runs (the progress lines).
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    error: str | None = None
    with atomic_path(executed) as tmp, quiet_logger("papermill", logging.ERROR):
        with watch(tmp) if watch else contextlib.nullcontext():
            try:
                pm.execute_notebook(
                    str(nb_path), str(tmp), parameters=params, kernel_name=kernel_name,
                    execution_timeout=cell_timeout, cwd=str(nb_path.parent), progress_bar=False,
                    # the kernel's TCP warning is noise on a local run; its errors still show
                    extra_arguments=["--IPKernelApp.log_level=ERROR"])
            except PapermillExecutionError as exc:
                error = f"cell In [{exc.exec_count}] raised {exc.ename}: {exc.evalue}"
            except CellTimeoutError:
                error = (f"a cell ran longer than the per-cell timeout of {cell_timeout:g} s "
                         "(raise it with --timeout)")
            except DeadKernelError as exc:
                error = f"the kernel died (out of memory?): {exc}"
        if error is not None and not tmp.exists():
            tmp.write_text("{}")  # pragma: no cover - papermill saves before raising
    return None if error is None else _one_line(error)


# ------------------------------------------------------------------------------------- run
def _user_parameters(selected: list[Path], data_dir: str | os.PathLike | None,
                     parameters: dict[str, Any] | None) -> tuple[dict[str, Any], dict[Path, dict]]:
    """The user's parameters (``data_dir`` among them), checked against what the selected
    notebooks' parameters cells define; and those definitions, by notebook."""
    user_params = dict(parameters or {})
    if data_dir is not None and str(data_dir) != "":
        data_path = Path(data_dir).expanduser().resolve()
        if not data_path.is_dir():
            raise DataError(data_path, "is not a directory (give the folder that holds dataset.json)")
        user_params[DATA_DIR_PARAMETER] = str(data_path)
    defined = {p: notebook_parameters(p) for p in selected}
    known = sorted(set().union(*defined.values()))
    unknown = sorted(set(user_params) - set(known))
    if unknown:
        raise ConfigError(None, f"unknown notebook parameter(s) {unknown}: no selected notebook's "
                                f"parameters cell defines them; known: {known}")
    try:
        user_params = {k: _injectable(v) for k, v in user_params.items()}
    except TypeError as exc:
        raise ConfigError(None, str(exc)) from None
    for nb_path, params in defined.items():
        for name, value in user_params.items():
            if name in params:
                _check_type(name, value, params[name], nb_path)
    return user_params, defined


def _run_notebook(nb_path: Path, result: NotebookResult, out: Path, run_dir: Path, summary: CourseSummary,
                  cell_timeout: float, kernel_name: str, watch: Callable[[Path], Any] | None) -> str | None:
    """Execute one notebook into ``out`` (executed copy, HTML) and fill in ``result``; its error or None."""
    executed, html = out / nb_path.name, out / f"{nb_path.stem}.html"
    stamp = _history_stamp(run_dir)
    t0 = time.perf_counter()
    error = _execute(nb_path, executed, result.parameters, cell_timeout, kernel_name, watch)
    result.seconds = round(time.perf_counter() - t0, 2)
    result.executed = str(executed)
    _write_html(executed, html)
    result.html = str(html)
    if _history_stamp(run_dir) != stamp:
        history = _read_history(run_dir, summary)
        if history is not None:
            result.val_dice, result.best_val_dice = history.val_dice[-1], history.best_metric
    result.status = "failed" if error else "ok"
    result.error = error
    return error


def run_course(output_dir: str | os.PathLike | None = None,
               data_dir: str | os.PathLike | None = None,
               parameters: dict[str, Any] | None = None,
               notebooks: Sequence[str | os.PathLike] | None = None,
               cell_timeout: float = DEFAULT_CELL_TIMEOUT_S,
               kernel_name: str = "python3",
               fresh: bool = False,
               progress: Progress | None = None,
               progress_every: float = PROGRESS_EVERY_S) -> CourseSummary:
    """Execute the course notebooks in order with papermill; write executed copies, HTML and a summary.

    ``output_dir`` defaults to ``<runs dir>/course``. ``data_dir`` (default: each notebook's
    own, the synthetic phantom) and ``parameters`` go to the notebooks that define them.
    ``notebooks`` selects a subset (``["03", "04"]``, stems or paths); ``fresh`` empties the
    shared run directory first (otherwise what an earlier course run left there stays), but
    only one that ``run_course`` created: a folder of the user's that holds files is refused
    (ConfigError), never emptied.
    ``progress`` receives one line per notebook started and finished, and while one runs a
    line at least every ``progress_every`` seconds: the time so far, the cell that runs and,
    while training writes the run directory's history, the last epoch, loss and validation
    Dice (a long notebook is never minutes of silence).

    Raises ConfigError for an unknown parameter or bad option, CourseError when a notebook fails.
    """
    say = progress or (lambda _line: None)
    if not cell_timeout or cell_timeout <= 0:
        raise ConfigError(None, f"the per-cell timeout must be a positive number of seconds, got {cell_timeout}")
    out = (Path(output_dir) if output_dir else default_runs_dir() / "course").resolve()
    run_dir = out / "run"
    selected = select_notebooks(notebooks)
    user_params, defined = _user_parameters(selected, data_dir, parameters)
    if RUN_DIR_PARAMETER in user_params:  # -p run_dir DIR: share that run directory instead
        run_dir = Path(str(user_params[RUN_DIR_PARAMETER])).expanduser().resolve()
        user_params[RUN_DIR_PARAMETER] = str(run_dir)
    _check_kernel(kernel_name)
    _prepare_run_dir(run_dir, fresh)
    summary = CourseSummary(output_dir=str(out), run_dir=str(run_dir),
                            data_dir=user_params.get(DATA_DIR_PARAMETER),
                            parameters={k: v for k, v in user_params.items() if k != DATA_DIR_PARAMETER},
                            cell_timeout_s=float(cell_timeout),
                            notebooks=[NotebookResult(p.name) for p in selected])
    start = time.perf_counter()
    failure: CourseError | None = None
    for index, (nb_path, result) in enumerate(zip(selected, summary.notebooks), start=1):
        shared = {RUN_DIR_PARAMETER: str(run_dir),
                  OUTPUT_DIR_PARAMETER: str(out / "outputs" / nb_path.stem)}
        result.parameters = {k: v for k, v in (shared | user_params).items() if k in defined[nb_path]}
        label = f"[{index}/{len(selected)}] {nb_path.name}"
        say(f"{label} ...")
        watch = None if progress is None else (
            lambda output, label=label: _progress_lines(say, label, output, run_dir, progress_every))
        error = _run_notebook(nb_path, result, out, run_dir, summary, cell_timeout, kernel_name, watch)
        dice = "" if result.val_dice is None else f", val Dice {result.val_dice:.4f}"
        say(f"{label} {result.status} in {result.seconds:.1f} s{dice}")
        if error:
            failure = CourseError(out / nb_path.name, error)
            break
    summary.total_seconds = round(time.perf_counter() - start, 2)
    history = _read_history(run_dir, summary)
    if history is not None:
        summary.final_val_dice = history.val_dice[-1]
        summary.best_val_dice, summary.best_epoch = history.best_metric, history.best_metric_epoch
        summary.epochs = history.last_epoch
    _write_summary(summary, out)
    if failure is not None:
        raise failure
    return summary
