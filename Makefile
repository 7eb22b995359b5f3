# spleen-course: two commands do everything on a fresh machine.
#   make course   set up .venv, then run the whole course headless (synthetic phantom)
#   make test     set up .venv, then run the unit, notebook and browser tests
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# torch goes in first, pinned, so no dependency can pull a multi-GB CUDA build.
TORCH_SPEC  ?= torch==2.13.0
STAMP       := $(VENV)/.installed

.PHONY: setup course test test-unit test-notebooks browser-deps readme-screenshot bench clean

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

# Chromium for the JupyterLab browser test (Debian's package; no browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser test will skip"; }

test: setup browser-deps
	$(BIN)/python -m pytest tests/ notebooks/ --nbmake -p no:cacheprovider

readme-screenshot: setup browser-deps
	SPLEEN_SCREENSHOT_DIR=docs/img $(BIN)/python -m pytest tests/test_browser.py -p no:cacheprovider

bench: setup
	$(BIN)/spleen-course bench

clean:
	rm -rf $(VENV) runs artifacts .pytest_cache
