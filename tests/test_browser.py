"""End to end: a course notebook in a real JupyterLab, driven by headless Chromium.

What a student sees, checked the way a student meets it: JupyterLab is started from this
project's environment (``python -m jupyter lab``) on 127.0.0.1 with a random port and token,
its config, data, runtime and course-home directories in a temporary folder so neither the
user's settings nor the repository are touched. Chromium (Debian's package, driven through
Playwright over its DevTools pipe: no browser download, no chromedriver) opens the notebook,
runs all cells from the Run menu, waits for the slice viewer rendered by the ipywidgets front
end, moves its "slice" slider with the keyboard and checks that the image changed and that no
cell failed. This catches what headless tests cannot: a missing or mismatched widget
extension, an output that only prints a repr, a callback that never redraws.

The notebook under test is a parameter: ``notebooks/04_evaluation_and_viewers.ipynb`` when it
exists, and always a small generated notebook with an ipywidgets viewer of the same structure
(it checks the widget front end itself, independently of the course content). Both carry the
CSS classes ``spleen-slice-viewer`` (root widget) and ``spleen-slice-image`` (image output).

Screenshots of the image before and after the slider move and of the whole viewer
(``<notebook>_slice_before.png``, ``<notebook>_slice_after.png``, ``<notebook>_viewer.png``) are
written to ``artifacts/browser/`` (git-ignored), or to ``$SPLEEN_SCREENSHOT_DIR`` for the course
notebook when set (``make readme-screenshot`` sets it to ``docs/img``). A failing run leaves a
screenshot of the whole page in ``artifacts/browser/<notebook>_failure.png``.

The image change is measured on the drawn pixels below the panels' titles (the titles name
the slice, so they change even when the picture does not).

The 3-D view (:func:`spleen_helpers.teaching.view3d.view_3d`, an ipyniivue widget drawn with WebGL) is
checked the same way in a generated notebook and in ``notebooks/05_segment_a_study.ipynb``:
its canvas must show a picture (not one flat colour). Where the headless browser offers no WebGL 2, the test says so and checks the static
surface picture displayed with it instead (``<notebook>_3d.png`` is saved either way).

The test skips only when no Chromium executable can be found (``make browser-deps`` installs
Debian's ``chromium``), and fails instead under ``CI=true``; ``$SPLEEN_CHROMIUM`` names another
executable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.support import skip_or_fail

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
COURSE_NOTEBOOK = "04_evaluation_and_viewers.ipynb"
SCRATCH_NOTEBOOK = "viewer_smoke.ipynb"
VIEW3D_NOTEBOOK = "view3d_smoke.ipynb"
COURSE_3D_NOTEBOOK = "05_segment_a_study.ipynb"
VIEW3D_SELECTOR = ".spleen-3d-view"
CANVAS_DRAW_TIMEOUT_S = 60
MIN_DRAWN_FRACTION = 0.01  # pixels of the canvas that differ from its most common colour

# The notebook on screen (Lumino hides the panels of background tabs with lm-mod-hidden).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
VIEWER_SELECTOR = ".spleen-slice-viewer"
IMAGE_SELECTOR = ".spleen-slice-image"

# Chromium runs as root in containers (needs --no-sandbox) on a machine without network
# (the background-networking flags stop it from trying to reach Google services).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

SERVER_START_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 300  # quick mode takes about a minute on 2 idle cores; SPLEEN_QUICK=0 trains 20 epochs
REDRAW_TIMEOUT_S = 30
WIDGET_RENDER_TIMEOUT_S = 20
# Fraction of pixels that must differ between the two screenshots of the image output.
MIN_CHANGED_FRACTION = 0.002
# The viewers draw one row of panels, each with its title (which names the slice) on top: the
# rows above the first row that the pictures fill (at least half of it not white) are left out
# of the comparison, so a new title alone is no change. A fixed band would not do: a wide,
# flat slice makes a short panel under a title of the same height.
FILLED_ROW = 0.5


# --------------------------------------------------------------------------- notebooks


def scratch_notebook() -> nbformat.NotebookNode:
    """A small notebook whose viewer has the structure of ``spleen_helpers.teaching.viewers.slice_viewer``.

    A VBox (class ``spleen-slice-viewer``) with an IntSlider "slice", a FloatSlider "opacity"
    and an ``ipywidgets.Output`` (class ``spleen-slice-image``) redrawn with matplotlib.
    """
    code = '''\
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

# A blob whose radius grows with the slice index: every slice looks different.
zz, yy, xx = np.mgrid[0:32, 0:64, 0:64]
volume = np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2.0 * (2 + zz) ** 2))

slider = widgets.IntSlider(value=8, min=0, max=31, description="slice")
opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.1, description="opacity")
image = widgets.Output()
image.add_class("spleen-slice-image")

def draw(index: int) -> None:
    with image:
        image.clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.imshow(volume[index], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"slice {index}")
        ax.axis("off")
        display(fig)
        plt.close(fig)

slider.observe(lambda change: draw(change["new"]), names="value")
draw(slider.value)
viewer = widgets.VBox([slider, opacity, image])
viewer.add_class("spleen-slice-viewer")
viewer'''
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Slice viewer smoke test"),
        nbformat.v4.new_code_cell("print('kernel is up')"),
        nbformat.v4.new_code_cell(code),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def view3d_notebook() -> nbformat.NotebookNode:
    """A notebook that shows a small phantom CT and its spleen with ``spleen_helpers.teaching.view3d.view_3d``."""
    code = """\
from spleen_helpers.data.phantom import PhantomSpec, generate_case
from spleen_helpers.teaching.view3d import view_3d

image, label, affine = generate_case(0, PhantomSpec(shape=(64, 64, 24)))
view_3d(image, label=label, affine=affine, height=360)"""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 3-D view smoke test"), nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def drawn_fraction(png: bytes) -> float:
    """Fraction of pixels that differ from the picture's most common colour (0.0: blank)."""
    from PIL import Image

    picture = Image.open(BytesIO(png)).convert("RGB")
    counts = picture.getcolors(maxcolors=picture.size[0] * picture.size[1])
    most = max(count for count, _ in counts)
    return 1.0 - most / float(picture.size[0] * picture.size[1])


def view3d_cases() -> list[Any]:
    """The generated 3-D view notebook, and the course notebook that shows one once it exists."""
    cases = [pytest.param(VIEW3D_NOTEBOOK, id="view3d_smoke")]
    if (NOTEBOOKS_DIR / COURSE_3D_NOTEBOOK).is_file():
        cases.append(pytest.param(COURSE_3D_NOTEBOOK, id=Path(COURSE_3D_NOTEBOOK).stem))
    return cases


def notebook_cases() -> list[Any]:
    """The notebooks under test: the generated viewer, and the course's viewer notebook once it exists."""
    cases = [pytest.param(SCRATCH_NOTEBOOK, id="viewer_smoke")]
    if (NOTEBOOKS_DIR / COURSE_NOTEBOOK).is_file():
        cases.append(pytest.param(COURSE_NOTEBOOK, id=Path(COURSE_NOTEBOOK).stem))
    return cases


# --------------------------------------------------------------------------- chromium


def find_chromium() -> str | None:
    """Path of a Chromium executable: ``$SPLEEN_CHROMIUM``, else the first one on PATH."""
    env = os.environ.get("SPLEEN_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, closed at the end of the module."""
    executable = find_chromium()
    if executable is None:
        skip_or_fail("no Chromium found (looked for $SPLEEN_CHROMIUM and "
                     f"{', '.join(CHROMIUM_NAMES)} on PATH): run `make browser-deps` "
                     "(installs Debian's chromium) to enable the JupyterLab browser test")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # a broken environment is an error, not a reason to skip
        raise ImportError("playwright is missing: run `make setup` (pip install -e '.[test]')") from exc

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, headless=True,
                                      args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# --------------------------------------------------------------------------- jupyterlab


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class JupyterLab:
    """A running JupyterLab server: where it listens, its token, its notebook root."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]

    def api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def jupyter_env(tmp: Path) -> dict[str, str]:
    """The environment of the server: settings and course home in ``tmp``, quick course mode."""
    env = dict(os.environ)
    for name in ("JUPYTER_PATH", "JUPYTER_TOKEN", "JUPYTERLAB_SETTINGS_DIR",
                 "JUPYTERLAB_WORKSPACES_DIR", "MPLBACKEND", "JPY_SESSION_NAME"):
        env.pop(name, None)
    for name in ("config", "data", "runtime"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(tmp / "ipython"),
        SPLEEN_COURSE_HOME=str(tmp / "course"),
        # Quick unless the caller asks otherwise (`make readme-screenshot` sets 0 for a real model).
        SPLEEN_QUICK=os.environ.get("SPLEEN_QUICK", "1"),
        PYTHONUNBUFFERED="1",
    )
    # No "Jupyter news?" toast over the notebook, no update check (the machine may be offline).
    settings = tmp / "config" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return env


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab from this environment on a random port, shut down at the end of the module.

    The notebook root is ``<tmp>/course/notebooks``, a copy of the repository's notebooks
    folder, with ``SPLEEN_COURSE_HOME=<tmp>/course`` so that data and runs go there too.
    """
    tmp = tmp_path_factory.mktemp("jupyterlab")
    root = tmp / "course" / "notebooks"
    if NOTEBOOKS_DIR.is_dir():
        shutil.copytree(NOTEBOOKS_DIR, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    port = free_port()
    log = tmp / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",  # ServerApp.token is its deprecated alias
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI runners often run as root
    with open(log, "wb") as log_file:
        process = subprocess.Popen(cmd, cwd=root, env=jupyter_env(tmp), stdout=log_file,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    lab = JupyterLab(url=f"http://127.0.0.1:{port}", token=token, root=root, log=log,
                     process=process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {process.returncode}:\n{lab.log_tail()}")
            try:
                lab.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer /api/status within "
                                f"{SERVER_START_TIMEOUT_S} s:\n{lab.log_tail()}")
                time.sleep(0.25)
        yield lab
    finally:
        stop_jupyterlab(lab)


def stop_jupyterlab(lab: JupyterLab) -> None:
    """Shut down kernels and server: the REST API first, then SIGTERM, then SIGKILL."""
    if lab.process.poll() is None:
        try:
            lab.api("/api/shutdown", method="POST")
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        try:
            lab.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if lab.process.poll() is not None:
            break
        try:
            os.killpg(lab.process.pid, sig)
        except ProcessLookupError:
            break
        try:
            lab.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


def stop_kernels(lab: JupyterLab, notebook: str) -> None:
    """Shut down the kernel sessions of ``notebook`` (frees the CPU for the next notebook)."""
    try:
        for session in lab.api("/api/sessions"):
            if session.get("path") == notebook:
                lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    except (urllib.error.URLError, ConnectionError, OSError):
        pass  # the server is gone: its kernels went with it


# --------------------------------------------------------------------------- helpers


def screenshot_dir(notebook: str) -> Path:
    """``$SPLEEN_SCREENSHOT_DIR`` for the course notebook when set, else ``artifacts/browser``."""
    env = os.environ.get("SPLEEN_SCREENSHOT_DIR")
    if env and notebook != SCRATCH_NOTEBOOK:
        out = Path(env)
        out = out if out.is_absolute() else REPO_ROOT / out
    else:
        out = REPO_ROOT / "artifacts" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def picture_top(image: Any) -> int:
    """The first pixel row that the pictures fill (the row below the titles), or 0."""
    import numpy as np

    filled = (np.asarray(image.convert("L")) < 245).mean(axis=1) >= FILLED_ROW
    rows = np.flatnonzero(filled)
    return int(rows[0]) if rows.size else 0


def changed_fraction(before: bytes, after: bytes, skip_titles: bool = True) -> float:
    """Fraction of pixels that differ between two PNG screenshots below their titles (see
    :func:`picture_top`; all of them with ``skip_titles=False``); 1.0 when the sizes differ."""
    from PIL import Image, ImageChops

    a = Image.open(BytesIO(before)).convert("RGB")
    b = Image.open(BytesIO(after)).convert("RGB")
    if a.size != b.size:
        return 1.0
    top = max(picture_top(a), picture_top(b)) if skip_titles else 0
    a, b = (im.crop((0, top, im.size[0], im.size[1])) for im in (a, b))
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 8 else 0)
    histogram = diff.histogram()
    return histogram[255] / float(a.size[0] * a.size[1])


def test_a_new_title_alone_is_no_changed_image() -> None:
    """The comparison ignores the titles: figures drawn like the viewers' (title above the
    picture), with the slice number in the title, differ only when the picture does."""
    import numpy as np
    from matplotlib.figure import Figure

    def png(picture: np.ndarray, title: str, panels: int) -> bytes:
        fig = Figure(figsize=(3.6 * panels, 3.6), dpi=80)
        for ax in fig.subplots(1, panels, squeeze=False)[0]:
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=10)
            ax.set_axis_off()
        fig.tight_layout()
        buf = BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    yy, xx = np.mgrid[0:64, 0:64]
    small, large = (np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2.0 * r ** 2)) for r in (6, 12))
    for panels in (1, 3):
        assert changed_fraction(png(small, "image (axial 3)", panels), png(small, "image (axial 6)", panels)) == 0
        assert changed_fraction(png(small, "image (axial 3)", panels),
                                png(large, "image (axial 6)", panels)) > 10 * MIN_CHANGED_FRACTION
        # without the band, the title alone would count as a change
        assert changed_fraction(png(small, "image (axial 3)", panels), png(small, "image (axial 6)", panels),
                                skip_titles=False) > 0

    # the viewer's own drawing, for a square slice and for a wide, flat one (a short panel
    # under a title of the same height: a fixed top fifth would cut into the title's text)
    from spleen_helpers.teaching.viewers import compose_panels

    def viewer_png(picture: np.ndarray, title: str) -> bytes:
        gray = (picture * 255).astype(np.uint8)
        img = compose_panels(gray, {"label": picture > 0.5}, {"image": title, "label": "label"}, 1.0, True, 0.5)
        buf = BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()

    from PIL import Image

    flat = large[:, 28:36]                          # 64 x 8 voxels: a panel about 36 pixels high
    drawn = Image.open(BytesIO(viewer_png(flat, "image (axial 3)")))
    assert picture_top(drawn) > 0.2 * drawn.size[1]  # the title is more than the top fifth
    for picture in (small, flat):
        assert changed_fraction(viewer_png(picture, "image (axial 3)"), viewer_png(picture, "image (axial 16)")) == 0
        assert changed_fraction(viewer_png(picture, "image (axial 3)"),
                                viewer_png(1.0 - picture, "image (axial 16)")) > 10 * MIN_CHANGED_FRACTION


def error_outputs(page: Any) -> list[str]:
    """Texts of rendered outputs that show a Python error (traceback or ``SomeError:`` line)."""
    texts = page.locator(f'{PANEL} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    pattern = re.compile(r"Traceback|^\s*\w+(Error|Exception|Interrupt)\b", re.M)
    return [t for t in texts.all_text_contents() if pattern.search(t)]


def wait_run_all_done(page: Any, timeout_s: float) -> None:
    """Wait until Run All has finished: no cell queued or running, and every code cell ran or one failed.

    Cells whose input is collapsed (the exercises' solutions) show an empty prompt and are not
    counted; the cells after them are numbered only once they ran.
    """
    page.wait_for_function(
        """(panel) => {
            const prompts = [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')]
                .map(p => p.textContent).filter(t => t.trim() !== '');
            const busy = prompts.some(p => p.includes('*'));
            const allRun = prompts.every(p => /\\[\\d+\\]/.test(p));
            const failed = [...document.querySelectorAll(panel +
                ' .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                .some(o => /Traceback|^\\s*\\w+(Error|Exception|Interrupt)\\b/m.test(o.textContent));
            return prompts.length > 0 && !busy && (allRun || failed);
        }""",
        arg=PANEL, timeout=timeout_s * 1000, polling=250,
    )


def wait_kernel_idle(page: Any, timeout_s: float) -> None:
    """Wait until the status bar shows a started kernel that is idle ("Python 3 (ipykernel) | Idle")."""
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\|\s*Idle$")).first.wait_for(
        timeout=timeout_s * 1000)


def saved_notebook_errors(page: Any, path: Path, timeout_s: float = 20) -> list[str]:
    """Save the notebook from the browser (File > Save Notebook), read it from disk, list its error outputs.

    Reading the saved file sees every output, also those of cells scrolled out of view.
    """
    before = path.stat().st_mtime_ns
    run_menu_command(page, "File", "Save Notebook")
    deadline = time.monotonic() + timeout_s
    while path.stat().st_mtime_ns == before:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} was not saved within {timeout_s} s")
        time.sleep(0.2)
    for _ in range(10):  # the file may be caught half-written by a non-atomic save
        try:
            nb = nbformat.read(path, as_version=4)
            break
        except Exception:
            time.sleep(0.3)
    else:
        nb = nbformat.read(path, as_version=4)
    errors = [f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
              for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    # collapsed cells (the exercises' solutions) show no prompt on screen: the file says whether they ran
    return errors + [f"cell {i}: did not run" for i, cell in enumerate(nb.cells)
                     if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None]


def run_menu_command(page: Any, menu: str, item: str) -> None:
    """Click ``menu`` in JupyterLab's menu bar, then the entry labelled exactly ``item``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    entry = page.locator(".lm-Menu-content .lm-Menu-itemLabel",
                         has_text=re.compile(rf"^{re.escape(item)}$"))
    entry.first.click()


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("notebook", notebook_cases())
def test_slice_viewer_renders_and_follows_the_slider(
    notebook: str, jupyterlab: JupyterLab, browser: Any
) -> None:
    """Run All in JupyterLab, move the viewer's slice slider, see the image change, no errors."""
    from playwright.sync_api import Error as PlaywrightError

    lab = jupyterlab
    nb_path = lab.root / notebook
    if notebook == SCRATCH_NOTEBOOK:
        nbformat.write(scratch_notebook(), nb_path)
    assert nb_path.is_file(), f"{nb_path} is missing from the server's root"
    out = screenshot_dir(notebook)
    stem = Path(notebook).stem
    failure_png = REPO_ROOT / "artifacts" / "browser" / f"{stem}_failure.png"
    failure_png.unlink(missing_ok=True)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}")
            if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))

    def context_for_failure() -> str:
        failure_png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(failure_png))
        outputs = page.locator(f"{PANEL} .jp-OutputArea-output").all_text_contents()
        return (f"\nerrors: {error_outputs(page)}\nlast outputs: {[o[:300] for o in outputs[-5:]]}"
                f"\nbrowser console: {console[-10:]}\nserver log:\n{lab.log_tail(1500)}"
                f"\npage screenshot: {failure_png}")

    try:
        # A workspace of its own: only this notebook open, nothing restored from an earlier test.
        workspace = f"{stem}-{secrets.token_hex(4)}"
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={lab.token}")
        try:
            wait_kernel_idle(page, SERVER_START_TIMEOUT_S)
        except Exception as exc:
            pytest.fail(f"the kernel of {notebook} did not start ({exc.__class__.__name__})"
                        + context_for_failure())

        # From a clean slate (a committed notebook may carry outputs), as a student would.
        run_menu_command(page, "Edit", "Clear Outputs of All Cells")
        run_menu_command(page, "Run", "Run All Cells")
        try:
            wait_run_all_done(page, RUN_ALL_TIMEOUT_S)
        except Exception as exc:
            pytest.fail(f"Run All Cells of {notebook} did not finish within {RUN_ALL_TIMEOUT_S} s "
                        f"({exc.__class__.__name__})" + context_for_failure())
        assert error_outputs(page) == [], f"cells of {notebook} show errors: {error_outputs(page)}"
        prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").all_text_contents()
        # a collapsed cell's prompt is empty; saved_notebook_errors checks from the file that it ran
        unrun = [i for i, p in enumerate(prompts) if p.strip() and not re.search(r"\[\d+\]", p)]
        assert not unrun, f"code cells {unrun} of {notebook} did not run (prompts {prompts})"

        viewer = page.locator(f"{PANEL} {VIEWER_SELECTOR}")
        try:
            viewer.first.wait_for(timeout=WIDGET_RENDER_TIMEOUT_S * 1000)
        except Exception as exc:  # report what the student sees instead of the viewer
            pytest.fail(f"all cells of {notebook} ran but no {VIEWER_SELECTOR} widget rendered "
                        f"({exc.__class__.__name__}): is the ipywidgets front end "
                        "(jupyterlab_widgets) installed and matching ipywidgets?"
                        + context_for_failure())
        viewer = viewer.first  # a notebook may show several viewers: the first one is moved

        assert viewer.locator(IMAGE_SELECTOR).count() == 1, \
            f"no {IMAGE_SELECTOR} element in the viewer of {notebook}"
        # The picture: an <img> in an Output widget, or the ipywidgets.Image itself.
        image = viewer.locator(f"{IMAGE_SELECTOR} img, img{IMAGE_SELECTOR}").first
        image.wait_for(timeout=REDRAW_TIMEOUT_S * 1000)
        slider = viewer.locator(".widget-slider").filter(
            has=page.locator(".widget-label", has_text=re.compile(r"^\s*slice\s*$")))
        assert slider.count() == 1, f"no slider labelled 'slice' in the viewer of {notebook}"
        handle = slider.locator(".noUi-handle").first
        readout = slider.locator(".widget-readout").first
        first_value = int(readout.text_content().strip())
        maximum = int(float(handle.get_attribute("aria-valuemax") or first_value))
        steps = 3
        key = "ArrowRight" if first_value + steps <= maximum else "ArrowLeft"
        expected = first_value + steps if key == "ArrowRight" else first_value - steps

        viewer.scroll_into_view_if_needed()
        before = image.screenshot()
        handle.focus()
        for _ in range(steps):
            handle.press(key)
        try:
            page.wait_for_function("([el, want]) => el.textContent.trim() === String(want)",
                                   arg=[readout.element_handle(), expected],
                                   timeout=REDRAW_TIMEOUT_S * 1000)
        except Exception:
            pytest.fail(f"the slice slider did not move {first_value} -> {expected} with "
                        f"{steps} x {key}: it shows {readout.text_content()}" + context_for_failure())

        # The kernel redraws the image; poll until the screenshot differs (or time runs out).
        fraction, after = 0.0, before
        deadline = time.monotonic() + REDRAW_TIMEOUT_S
        while time.monotonic() < deadline:
            page.wait_for_timeout(250)
            try:
                after = image.screenshot(timeout=5000)
            except PlaywrightError:
                continue  # the <img> was replaced while being captured: try again
            fraction = changed_fraction(before, after)
            if fraction >= MIN_CHANGED_FRACTION:
                break
        page.wait_for_timeout(500)  # let a redraw in flight land before the viewer screenshot
        (out / f"{stem}_slice_before.png").write_bytes(before)
        (out / f"{stem}_slice_after.png").write_bytes(after)
        viewer.screenshot(path=str(out / f"{stem}_viewer.png"))

        assert fraction >= MIN_CHANGED_FRACTION, (
            f"the image of {notebook} did not change after moving the slice slider "
            f"{first_value} -> {expected} ({fraction:.3%} of pixels changed); screenshots in {out}")
        assert error_outputs(page) == [], f"errors after moving the slider: {error_outputs(page)}"
        widget_errors = [m for m in console if re.search(r"widget|Could not create", m, re.I)]
        assert widget_errors == [], f"widget errors in the browser console: {widget_errors}"
        assert saved_notebook_errors(page, nb_path) == []
    finally:
        context.close()
        stop_kernels(lab, notebook)


@pytest.mark.parametrize("notebook", view3d_cases())
def test_3d_view_draws_its_canvas(notebook: str, jupyterlab: JupyterLab, browser: Any) -> None:
    """Run a notebook that shows ``view_3d`` and check that NiiVue's WebGL canvas shows a picture;
    without WebGL 2 in this browser, say so and check the static surface picture instead."""
    lab = jupyterlab
    nb_path = lab.root / notebook
    if notebook == VIEW3D_NOTEBOOK:
        nbformat.write(view3d_notebook(), nb_path)
    stem = Path(notebook).stem
    out = REPO_ROOT / "artifacts" / "browser"
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
    try:
        workspace = f"{stem}-3d-{secrets.token_hex(4)}"
        page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={lab.token}")
        wait_kernel_idle(page, SERVER_START_TIMEOUT_S)
        run_menu_command(page, "Edit", "Clear Outputs of All Cells")
        run_menu_command(page, "Run", "Run All Cells")
        try:
            wait_run_all_done(page, RUN_ALL_TIMEOUT_S)
        except Exception as exc:
            failure = out / f"{stem}_3d_failure.png"
            page.screenshot(path=str(failure))
            prompts = page.locator(f"{PANEL} .jp-CodeCell .jp-InputPrompt").all_text_contents()
            pytest.fail(f"Run All Cells of {notebook} did not finish within {RUN_ALL_TIMEOUT_S} s "
                        f"({exc.__class__.__name__}); prompts {prompts}; page screenshot {failure}; "
                        f"server log:\n{lab.log_tail(1500)}")
        assert error_outputs(page) == [], f"cells of {notebook} show errors: {error_outputs(page)}"

        webgl2 = page.evaluate("() => !!document.createElement('canvas').getContext('webgl2')")
        if not webgl2:
            import warnings

            warnings.warn("this headless Chromium offers no WebGL 2: the NiiVue canvas cannot be drawn "
                          "here; checking the static surface picture instead", stacklevel=1)
            # the static picture is the output just before the widget's
            area = page.locator(f"{PANEL} .jp-OutputArea", has=page.locator(VIEW3D_SELECTOR)).first
            picture = area.locator(".jp-OutputArea-output img").first
            picture.wait_for(timeout=WIDGET_RENDER_TIMEOUT_S * 1000)
            png = picture.screenshot()
            (out / f"{stem}_3d.png").write_bytes(png)
            assert drawn_fraction(png) >= MIN_DRAWN_FRACTION, "the static surface picture is blank"
            return

        canvas = page.locator(f"{PANEL} {VIEW3D_SELECTOR} canvas").first
        try:
            canvas.wait_for(timeout=WIDGET_RENDER_TIMEOUT_S * 1000)
        except Exception as exc:
            pytest.fail(f"no canvas in the {VIEW3D_SELECTOR} widget ({exc.__class__.__name__}); "
                        f"browser console: {console[-10:]}")
        canvas.scroll_into_view_if_needed()
        fraction, png = 0.0, b""
        deadline = time.monotonic() + CANVAS_DRAW_TIMEOUT_S
        while time.monotonic() < deadline:  # NiiVue draws once the volumes have loaded
            page.wait_for_timeout(500)
            png = canvas.screenshot()
            fraction = drawn_fraction(png)
            if fraction >= MIN_DRAWN_FRACTION:
                break
        (out / f"{stem}_3d.png").write_bytes(png)
        assert fraction >= MIN_DRAWN_FRACTION, (
            f"the 3-D view's canvas of {notebook} stayed blank ({fraction:.2%} of pixels drawn); "
            f"screenshot in {out / f'{stem}_3d.png'}; browser console: {console[-10:]}")
        assert not [m for m in console if re.search(r"widget|anywidget|niivue", m, re.I)], console
    finally:
        context.close()
        stop_kernels(lab, notebook)
