# The two commands: `make repro` runs the pipeline, `make test` runs the tests.
# Each creates the project's virtualenv on first use and reinstalls only when pyproject.toml or the lock changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

CHROMIUM ?= /usr/bin/chromium
BWRAP  ?= /usr/bin/bwrap
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export PATH := $(abspath $(BIN)):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: repro test clean-venv offline-plots

repro: $(VENV)/.installed-base $(BWRAP)
	dvc repro

test: $(VENV)/.installed-dev $(CHROMIUM) $(BWRAP)
	ruff check .
	ruff format --check .
	DVC_NO_ANALYTICS=1 pytest -n 2 --dist loadfile $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The pipeline's default models run locally, so it installs the `local` extra (torch) too.
$(VENV)/.installed-base: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint requirements.lock --editable '.[local]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --constraint requirements.lock --editable '.[dev]'
	touch $@ $(VENV)/.installed-base

# The browser test drives Debian's Chromium (playwright never downloads a browser of its own here).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium

# The execute stage runs generated code inside bubblewrap's namespaces (without it, it warns and contains less).
$(BWRAP):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq bubblewrap

clean-venv:
	rm -rf $(VENV)

# `dvc plots show` writes its page from .dvc/plots/page.html (.dvc/config: plots.html_template), which carries Vega,
# Vega-Lite and Vega-Embed inline (the versions dvc-render's own page loads from a CDN), so charts draw without
# internet. The page is committed; this rebuilds it from the npm registry (needs npm) after a version change.
VEGA_JS := vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2

offline-plots:
	rm -rf build/vega && mkdir -p build/vega
	cd build/vega && npm pack --silent $(VEGA_JS) >/dev/null && for f in *.tgz; do mkdir $${f%.tgz} && tar -xzf $$f -C $${f%.tgz}; done
	{ printf '%s\n' '<!DOCTYPE html>' '<html>' '<head>' '<meta charset="utf-8">' '{refresh_tag}' '<title>DVC Plot</title>'; \
	  for p in $(VEGA_JS); do d=build/vega/$$(echo $$p | tr @ -)/package; \
	    printf '<!-- %s (npm), build/%s.min.js, under this licence:\n' $$p $${p%@*}; cat $$d/LICENSE; printf -- '-->\n<script>\n'; \
	    sed '/^\/\/# sourceMappingURL=/d' $$d/build/$${p%@*}.min.js; printf '\n</script>\n'; done; \
	  printf '%s\n' '<style>table { border-spacing: 15px; }</style>' '</head>' '<body>' '{plot_divs}' '</body>' '</html>'; \
	} > .dvc/plots/page.html
