"""The course as a static site (spleen_helpers.tools.site): its pieces, and a small site in a browser.

The browser test executes notebook 01 and a fixture notebook (a figure, a solution, a widget
with its picture and a widget alone) with the course runner, builds the site from that run with
a small glossary, serves it on 127.0.0.1 and opens it in headless Chromium (the set-up of
tests/test_browser.py): the home page links every page, every local link answers, every page
loads with its figures drawn (not blank), solutions are collapsed, search finds a word. The
same checks run on a copy with one figure removed and one broken link, and must say so.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from spleen_helpers.ground.errors import ConfigError, DataError
from spleen_helpers.tools.site import (SITE_MARKER, WIDGET_NOTE, WIDGET_VIEW, build_site, prepare_notebook,
                                       read_run_stamp, readme_section, rewrite_links)
from tests.support import skip_or_fail

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_NOTEBOOK = "90_site_fixture.ipynb"
GLOSSARY = "# Glossary\n\nHounsfield unit\n: the CT's scale of radiodensity: water 0, air -1000.\n"
README_PAGES = ("setup.html", "cli.html", "troubleshooting.html")
MIN_DRAWN_FRACTION = 0.01


def widget_output(with_picture: bool) -> Any:
    data = {WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0},
            "text/plain": "VBox(children=(IntSlider(value=3),))"}
    if with_picture:
        data["image/png"] = "iVBORw0KGgo="
    return nbformat.v4.new_output("display_data", data=data)


# ----------------------------------------------------------------------------- the pieces
def test_prepare_notebook_collapses_solutions_and_keeps_pictures_of_widgets(tmp_path: Path) -> None:
    solution = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"],
                                                            "jupyter": {"source_hidden": True}})
    widgets = nbformat.v4.new_code_cell("viewer", outputs=[widget_output(True), widget_output(False)])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plain"), solution, widgets])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, tmp_path / "in.ipynb")
    out = nbformat.read(prepare_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb"), as_version=4)
    assert "widgets" not in out.metadata
    assert out.cells[0].metadata.get("tags", []) == []
    assert out.cells[1].metadata.tags == ["solution", "hide-input"]
    assert [set(o.data) for o in out.cells[2].outputs] == [{"image/png"}, {"text/markdown"}]
    assert out.cells[2].outputs[1].data["text/markdown"] == WIDGET_NOTE


def test_readme_links_point_at_site_pages_or_the_repository() -> None:
    text = "[01](notebooks/01_a.ipynb#top) [x](BENCHMARKS.md) ![p](docs/img/a.png) [w](https://x.org) [s](#here)"
    assert rewrite_links(text, {"01_a.ipynb"}, "https://r") == (
        "[01](01_a.ipynb#top) [x](https://r/blob/main/BENCHMARKS.md) ![p](https://r/raw/main/docs/img/a.png) "
        "[w](https://x.org) [s](#here)")
    assert rewrite_links("[a](architecture.md)", set(), "https://r", base="docs") == \
        "[a](https://r/blob/main/docs/architecture.md)"


def test_the_site_links_to_the_project_homepage() -> None:
    import tomllib

    from spleen_helpers.tools.site import REPOSITORY_URL

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["urls"]["Homepage"] == REPOSITORY_URL


def test_readme_sections_the_site_shows_are_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for heading in ("Running the notebooks", "Command line", "Troubleshooting", "Course map"):
        body = readme_section(readme, heading)
        assert body and "\n## " not in body, heading
    assert readme_section(readme, "No such section") is None


def test_the_run_stamp_comes_from_the_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"profile": "synthetic", "data_dir": "/d/synthetic"}))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print()", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="spleen_helpers 0.1.0 | monai 1.6.1\n")])])
    nb.metadata["papermill"] = {"start_time": "2026-01-02T03:04:05+00:00", "end_time": "2026-01-02T03:09:00+00:00"}
    nb.metadata["language_info"] = {"version": "3.11.7"}
    nbformat.write(nb, tmp_path / "03_x.ipynb")
    summary = {"run_dir": str(run_dir), "data_dir": None, "parameters": {"max_epochs": 3},
               "notebooks": [{"notebook": "03_x.ipynb", "status": "ok", "seconds": 2.0}],
               "final_val_dice": 0.8123, "best_val_dice": 0.85, "best_epoch": 2, "epochs": 3}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    stamp = read_run_stamp(tmp_path)
    assert stamp.versions == {"spleen_helpers": "0.1.0", "monai": "1.6.1", "python": "3.11.7"}
    text = stamp.markdown()
    for part in ("2026-01-02 03:04 UTC", "monai 1.6.1", "synthetic CT phantom (`/d/synthetic`)",
                 "`max_epochs = 3`", "**0.8123** (best 0.8500 at epoch 2, 3 epochs trained)"):
        assert part in text, (part, text)


def test_build_site_refuses_what_is_no_run_or_no_site(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no summary.json"):
        build_site(tmp_path, tmp_path / "site")
    (tmp_path / "summary.json").write_text(json.dumps({"notebooks": []}))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a site this command built"):
        build_site(tmp_path, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").is_file()


# ----------------------------------------------------------------------------- the browser
def fixture_notebook() -> nbformat.NotebookNode:
    """A figure, a solution, a widget with its picture and a widget alone."""
    figure = ("import matplotlib.pyplot as plt\nimport numpy as np\n"
              "fig, ax = plt.subplots(figsize=(3, 3))\n"
              "ax.imshow(np.outer(np.arange(32), np.arange(32)), cmap='gray')\nplt.show()")
    widgets = ("import ipywidgets as widgets\nfrom IPython.display import display\n"
               "from spleen_helpers.teaching.viewers import slice_viewer\nimport numpy as np\n"
               "zz, yy, xx = np.mgrid[0:24, 0:24, 0:8]\n"
               "display(slice_viewer((xx + yy + zz).astype('float32'), (xx > 10).astype('uint8')))\n"
               "display(widgets.IntSlider(value=3))")
    solution = nbformat.v4.new_code_cell("print('the hidden solution prints this')",
                                         metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}})
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 90 · Site fixture\n\nA figure, a solution and widgets."),
        nbformat.v4.new_code_cell(figure), solution, nbformat.v4.new_code_cell(widgets)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course run of notebook 01 and the fixture notebook, and its site in ``<tmp>/site``."""
    from spleen_helpers.tools.course import run_course

    tmp = tmp_path_factory.mktemp("site")
    nbformat.write(fixture_notebook(), tmp / FIXTURE_NOTEBOOK)
    (tmp / "glossary.md").write_text(GLOSSARY, encoding="utf-8")
    run_course(tmp / "run", notebooks=[REPO_ROOT / "notebooks" / "01_dicom_nifti_basics.ipynb",
                                       tmp / FIXTURE_NOTEBOOK])
    report = build_site(tmp / "run", tmp / "site", glossary=tmp / "glossary.md")
    assert (report.out / SITE_MARKER).is_file() and report.index.is_file()
    return report.out


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from tests.test_browser import CHROMIUM_ARGS, CHROMIUM_NAMES, find_chromium

    executable = find_chromium()
    if executable is None:
        skip_or_fail(f"no Chromium found ($SPLEEN_CHROMIUM, {', '.join(CHROMIUM_NAMES)}): run "
                     "`make browser-deps` to enable the site's browser test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(built_site: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving the folder that holds the site (and its broken copy)."""
    handler = functools.partial(QuietHandler, directory=str(built_site.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def local_links(page: Any, root: str) -> set[str]:
    """The local pages the main content of ``page`` links to (without anchors)."""
    hrefs = page.eval_on_selector_all("main a[href]", "els => els.map(a => a.href)")
    return {h.split("#")[0] for h in hrefs if h.startswith(root)}


def page_problems(page: Any, url: str, root: str, needs_figure: bool) -> list[str]:
    """What is wrong with one page: it does not load, a local image is missing or blank, a
    local link does not answer, or a notebook page has no figure."""
    from tests.test_browser import drawn_fraction

    response = page.goto(url, wait_until="load")
    if response is None or response.status != 200:
        return [f"{url}: does not load ({response and response.status})"]
    problems = []
    images = page.eval_on_selector_all(
        "main img", "els => els.map(i => [i.src, i.complete && i.naturalWidth > 0])")
    local = [(src, drawn) for src, drawn in images if src.startswith(root)]
    for src, loaded in local:
        reply = page.request.get(src)
        if not loaded or reply.status != 200:
            problems.append(f"{url}: missing figure {src}")
        elif drawn_fraction(reply.body()) < MIN_DRAWN_FRACTION:
            problems.append(f"{url}: blank figure {src}")
    if needs_figure and not local:
        problems.append(f"{url}: no figure")
    for link in sorted(local_links(page, root)):
        if page.request.get(link).status != 200:
            problems.append(f"{url}: broken link {link}")
    return problems


def site_problems(browser: Any, root: str, notebook_pages: list[str]) -> list[str]:
    """Every problem of the site at ``root``: pages the home page does not link, then each page's."""
    page = browser.new_page()
    try:
        index = f"{root}/index.html"
        response = page.goto(index, wait_until="load")
        if response is None or response.status != 200:
            return [f"{index}: does not load"]
        linked = local_links(page, root)
        expected = [f"{root}/{name}" for name in [*notebook_pages, "glossary.html", *README_PAGES]]
        problems = [f"the home page does not link {url}" for url in expected if url not in linked]
        problems += page_problems(page, index, root, needs_figure=False)
        for url in sorted(linked | set(expected)):
            problems += page_problems(page, url, root, needs_figure=url.rsplit("/", 1)[1] in notebook_pages)
        return problems
    finally:
        page.close()


NOTEBOOK_PAGES = ["01_dicom_nifti_basics.html", FIXTURE_NOTEBOOK.replace(".ipynb", ".html")]


@pytest.mark.slow
@pytest.mark.browser
def test_the_site_links_every_page_and_shows_every_figure(built_site: Path, server: str, chromium: Any) -> None:
    root = f"{server}/{built_site.name}"
    assert site_problems(chromium, root, NOTEBOOK_PAGES) == []
    page = chromium.new_page()
    try:
        page.goto(f"{root}/index.html")
        home = page.inner_text("main")
        for part in ("The run shown here", "monai ", "final validation Dice", "90 · Site fixture"):
            assert part in home, part
        page.goto(f"{root}/glossary.html")
        assert "Hounsfield unit" in page.inner_text("main")
        page.goto(f"{root}/{NOTEBOOK_PAGES[1]}")
        solution = page.locator("details.hide", has_text="the hidden solution prints this")
        assert solution.count() == 1 and solution.get_attribute("open") is None
        assert not page.get_by_text("print('the hidden solution prints this')").is_visible()
        assert "run the notebook in JupyterLab" in page.inner_text("main")   # the widget alone
        page.goto(f"{root}/search.html?q=Hounsfield")
        page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    finally:
        page.close()


@pytest.mark.slow
@pytest.mark.browser
def test_a_missing_figure_or_broken_link_is_found(built_site: Path, server: str, chromium: Any) -> None:
    broken = built_site.parent / "broken"
    if broken.exists():
        shutil.rmtree(broken)
    shutil.copytree(built_site, broken)
    fixture_page = broken / NOTEBOOK_PAGES[1]
    html = fixture_page.read_text(encoding="utf-8")
    figure = html.split('src="_images/', 1)[1].split('"', 1)[0]
    (broken / "_images" / figure).unlink()
    index = broken / "index.html"
    index.write_text(index.read_text(encoding="utf-8").replace(
        "</main>", '<a href="no_such_page.html">gone</a></main>', 1), encoding="utf-8")
    problems = site_problems(chromium, f"{server}/broken", NOTEBOOK_PAGES)
    quoted = urllib.parse.quote(figure)
    assert any("missing figure" in p and (figure in p or quoted in p) for p in problems), problems
    assert any("broken link" in p and "no_such_page.html" in p for p in problems), problems
