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

.PHONY: repro test clean-venv

repro: $(VENV)/.installed-base $(BWRAP)
	dvc repro

test: $(VENV)/.installed-dev $(CHROMIUM) $(BWRAP)
	ruff check .
	ruff format --check .
	DVC_NO_ANALYTICS=1 pytest $(PYTEST_ARGS)

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
