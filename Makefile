# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   synthetic data -> datalist -> train -> evaluate -> infer (small, CPU)
#   make test   the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3

.PHONY: setup demo test lint

setup: $(VENV)/.installed

# torch first: the CPU wheel pinned here; a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(PY) scripts/run_demo.py

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
