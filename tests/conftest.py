"""Fixtures: one small synthetic BraTS dataset (real NIfTI files) per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import TINY_CV, copy_bundle, run_cross_validate

# Small enough for 2 CPU cores, large enough for 5 stratified folds (>= 5 cases per class).
SMALL_DATASET = {"n_hgg": 14, "n_lgg": 6, "seed": 7, "difficulty": 0.2, "voxel_mm": 3.0}


def pytest_report_header(config) -> str:
    """The CPU facts a failure on another machine depends on, at the top of every run's log."""
    import platform
    import warnings

    import torch

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "?")
    header = (
        f"cpu: {model} ({platform.machine()}), torch {torch.__version__}, capability "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    with warnings.catch_warnings():  # importing MONAI here, before pytest captures warnings, would print them
        warnings.simplefilter("ignore")
        try:
            from brats_grading.components.precision import cpu_bfloat16_kernels, default_autocast
        except ImportError:  # the MONAI Label environment runs its tests without this package installed
            return header
    return f"{header}, bfloat16 kernels: {cpu_bfloat16_kernels()}, default CPU autocast: {default_autocast('cpu')}"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


@pytest.fixture(scope="session")
def small_brats(tmp_path_factory) -> Path:
    """Dataset root of a small synthetic BraTS 2018 copy, with its ``datalist.json`` written."""
    from brats_grading.components.datalist import build_datalist, write_datalist
    from brats_grading.synthetic import generate_dataset

    root = generate_dataset(tmp_path_factory.mktemp("brats"), workers=2, **SMALL_DATASET)
    write_datalist(build_datalist(root), root / "datalist.json")
    return root


@pytest.fixture(scope="session")
def small_datalist(small_brats) -> dict:
    return json.loads((small_brats / "datalist.json").read_text())


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory) -> Path:
    """A fresh copy of the bundle the test module names in ``BUNDLE``, as a user would unzip it."""
    name = request.module.BUNDLE
    return copy_bundle(name, tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def tiny_cv(tmp_path_factory, small_brats) -> Path:
    """A two-fold cross-validation of a copy of the ResNet bundle (tiny), run by ``scripts/cross_validate.py``."""
    work = tmp_path_factory.mktemp("cv")
    bundle = copy_bundle("resnet50_3d_ldam", work)
    cv_dir = work / "cv"
    run_cross_validate(
        "run", str(bundle), "--dataset_dir", str(small_brats), "--output_dir", str(cv_dir), "--folds", "2", *TINY_CV
    )
    return cv_dir


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config, items) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``): keep each module on one worker, so its
    module-scoped runs are made once, and the modules sharing the cross-validation run together."""
    if not config.pluginmanager.hasplugin("xdist"):
        return  # environments without pytest-xdist (MONAI Label's) run the tests in one process
    modules = {item.nodeid.split("::")[0] for item in items}
    sharing_cv = {m for m in modules if any(i.nodeid.startswith(m) and "tiny_cv" in i.fixturenames for i in items)}
    for item in items:
        module = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group("tiny_cv" if module in sharing_cv else module))
