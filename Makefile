# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   synthetic data -> datalist -> train -> evaluate -> infer (small, CPU)
#   make test   the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
SYSTEM_PYTHON ?= python3

DEPLOY_VENV ?= .venv-deploy
DEPLOY_PY := $(DEPLOY_VENV)/bin/python

LABEL_VENV ?= .venv-label
LABEL_PY := $(LABEL_VENV)/bin/python
LABEL_CONSTRAINTS := src/brats_grading/label_app/constraints.txt
# the bundles' runtime packages; the repository package is not installed there (monailabel pins jsonschema 3)
LABEL_PACKAGES := monailabel==0.8.5 nibabel pytorch-ignite==0.5.5 scikit-learn scipy matplotlib tensorboard einops pytest

# -qq: errors only; the CI host's pip configuration warns once per package about find-links folders it lacks
PIP_QUIET := -qq

.PHONY: setup demo test lint setup-deploy test-deploy setup-label test-label

setup: $(VENV)/.installed

# torch first: the CPU wheel pinned here; a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) torch==2.13.0
	$(PY) -m pip install $(PIP_QUIET) -e ".[dev]"
	touch $@

demo: setup
	$(PY) scripts/run_demo.py

# Two workers for two cores, one torch thread each: serially the tests spend a third of their time in
# single-threaded start-up and I/O (measured here: 15.8 min serially, 10.2 min on two workers with each module on
# one worker: pytest < 9, see pyproject.toml).
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup --durations=15

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# MONAI Deploy example app: a separate environment (the SDK pulls holoscan; see docs/deployment.md).
setup-deploy: $(DEPLOY_VENV)/.installed

$(DEPLOY_VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(DEPLOY_PY) -m pip install $(PIP_QUIET) torch==2.13.0
	$(DEPLOY_PY) -m pip install $(PIP_QUIET) -e ".[dev,deploy]"
	touch $@

test-deploy: setup-deploy
	$(DEPLOY_PY) -m pytest -m deploy tests/deploy

# MONAI Label app: its own environment (monailabel downgrades numpy and jsonschema); not part of CI.
setup-label: $(LABEL_VENV)/.installed

$(LABEL_VENV)/.installed: $(LABEL_CONSTRAINTS)
	$(SYSTEM_PYTHON) -m venv $(LABEL_VENV)
	$(LABEL_PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(LABEL_PY) -m pip install $(PIP_QUIET) torch==2.13.0
	$(LABEL_PY) -m pip install $(PIP_QUIET) -c $(LABEL_CONSTRAINTS) $(LABEL_PACKAGES)
	touch $@

test-label: setup-label
	$(LABEL_PY) -m pytest -p no:cacheprovider -m label tests/label
