# spleen-course: two commands do everything on a fresh machine.
#   make course   set up .venv, then run the whole course headless (synthetic phantom)
#   make test     set up .venv, then run the unit, doctest, notebook and browser tests
#   make test-fast  the tests not marked slow, for a quick check while you work
#   make site     the course as a static web site (runs/site/), from a course run
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# torch goes in first, pinned, so no dependency can pull a multi-GB CUDA build.
TORCH_SPEC  ?= torch==2.13.0
STAMP       := $(VENV)/.installed

.PHONY: setup course site test test-fast browser-deps readme-screenshot bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

course: setup
	$(BIN)/spleen-course run-course

# The course as a static site (Sphinx with MyST-NB; the setup installs them): the executed
# notebooks of COURSE_RUN -- run first when it holds no course run yet -- shown as they ran,
# never executed again, written to SITE_DIR. Publish SITE_DIR as it is (README: The course as
# a site). Another run: make site COURSE_RUN=runs/real.
COURSE_RUN  ?= runs/course
SITE_DIR    ?= runs/site
site: setup
	test -f $(COURSE_RUN)/summary.json || $(BIN)/spleen-course run-course --output-dir $(COURSE_RUN)
	$(BIN)/spleen-course site --output-dir $(COURSE_RUN) --out $(SITE_DIR)

# Chromium for the JupyterLab browser test: Debian's package, driven by Playwright over its
# DevTools pipe (no browser download, no chromedriver). Installs only when none is found and
# apt-get can run as root; otherwise, or when the install fails, says why (apt-get's own last
# words included): the browser test then skips on a user's machine and fails under CI=true.
# Idempotent.
BROWSERS := chromium chromium-browser google-chrome google-chrome-stable
NO_BROWSER  := the browser test will skip (and fail under CI=true)
browser-deps:
	@found=""; [ -x "$${SPLEEN_CHROMIUM:-}" ] && found="$$SPLEEN_CHROMIUM"; \
	for b in $(BROWSERS); do [ -n "$$found" ] || found="$$(command -v $$b 2>/dev/null)"; done; \
	if [ -n "$$found" ]; then :; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "no chromium, and apt-get cannot install it: that needs root (this is uid $$(id -u)); $(NO_BROWSER)." \
	       "Install Debian's chromium, or set SPLEEN_CHROMIUM to a Chromium executable."; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "no chromium, and apt-get is not available to install it; $(NO_BROWSER)." \
	       "Install Chromium, or set SPLEEN_CHROMIUM to a Chromium executable."; \
	else \
	  echo "installing Debian's chromium for the browser test"; \
	  log="$$(mktemp)"; \
	  if { apt-get update -qq && DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes \
	       apt-get install -y -qq chromium; } >"$$log" 2>&1; then :; \
	  else \
	    echo "chromium could not be installed with apt-get (exit status $$?); $(NO_BROWSER). apt-get said:"; \
	    tail -n 5 "$$log" | sed 's/^/  | /'; \
	  fi; \
	  rm -f "$$log"; \
	fi

test: setup browser-deps
	$(BIN)/python -m pytest tests/ spleen_helpers/ notebooks/ --nbmake --doctest-modules -p no:cacheprovider

# The quick lane: everything not marked slow (no training, notebook, DDP, browser or benchmark test).
test-fast: setup
	$(BIN)/python -m pytest tests/ spleen_helpers/ --doctest-modules -p no:cacheprovider -m "not slow"

# The slice viewer of notebook 04 as rendered in JupyterLab, for the README: docs/img/
# 04_evaluation_and_viewers_{viewer,slice_before,slice_after}.png. Fails rather than skips.
README_NB   := 04_evaluation_and_viewers
readme-screenshot: setup browser-deps
	@test -f notebooks/$(README_NB).ipynb || { echo "notebooks/$(README_NB).ipynb does not exist yet"; exit 1; }
	@rm -f docs/img/$(README_NB)_viewer.png docs/img/$(README_NB)_slice_before.png docs/img/$(README_NB)_slice_after.png
	SPLEEN_QUICK=0 SPLEEN_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest -p no:cacheprovider \
	  "tests/test_browser.py::test_slice_viewer_renders_and_follows_the_slider[$(README_NB)]"
	@test -f docs/img/$(README_NB)_viewer.png || { echo "no screenshot written (was the browser test skipped?)"; exit 1; }
	@ls -l docs/img/$(README_NB)_*.png

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache
