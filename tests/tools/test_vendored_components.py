"""Shared components have one source: every bundle's scripts/common holds byte-identical copies of the
modules that bundle imports, and nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, failure_text

from brats_grading.import_closure import bundle_closure

SYNC = REPO / "scripts" / "sync_components.py"


def test_every_bundle_copy_matches_the_source():
    result = subprocess.run([sys.executable, str(SYNC), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, failure_text(result)


def test_check_detects_a_drifted_copy(tmp_path, monkeypatch):
    sys.path.insert(0, str(SYNC.parent))
    try:
        import sync_components
    finally:
        sys.path.pop(0)
    bundle = tmp_path / "bundles" / "demo"
    (bundle / "configs").mkdir(parents=True)
    config = {"handlers": [{"_target_": "scripts.common.handlers.OptimizerStepEMAHandler"}]}
    (bundle / "configs" / "train.json").write_text(json.dumps(config))
    monkeypatch.setattr(sync_components, "BUNDLES", tmp_path / "bundles")
    sync_components.sync(bundle / "scripts" / "common")
    assert sync_components.differences(bundle / "scripts" / "common") == []
    target = bundle / "scripts" / "common" / "handlers" / "ema.py"  # sub-packages are copied and checked too
    target.write_text(target.read_text() + "\n# local edit\n")
    (bundle / "scripts" / "common" / "extra.py").write_text("")
    assert sync_components.differences(bundle / "scripts" / "common") == ["extra.py", "handlers/ema.py"]
    assert sync_components.main(["--check"]) == 1
    assert sync_components.main([]) == 0 and sync_components.main(["--check"]) == 0
    shutil.rmtree(bundle)


def test_components_import_nothing_from_the_repository():
    for path in (REPO / "src" / "brats_grading" / "components").rglob("*.py"):
        text = path.read_text()
        assert "brats_grading" not in text.replace("brats_grading/components", ""), path


def _bundle(root: Path, config: str, script: str = "") -> Path:
    bundle = root / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text(config)
    (bundle / "scripts").mkdir()
    (bundle / "scripts" / "tool.py").write_text(script)
    return bundle


def _components(root: Path) -> Path:
    """A component tree: a lazy package, an import inside a function, a module nobody imports."""
    source = root / "components"
    (source / "handlers").mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "handlers" / "__init__.py").write_text('_MODULE_OF = {"Saver": "saving", "Loader": "loading"}\n')
    (source / "handlers" / "saving.py").write_text("def save():\n    from ..outputs import write\n")
    (source / "handlers" / "loading.py").write_text("from .. import data\n")
    (source / "outputs.py").write_text("from .data import RECORD\n")
    (source / "data.py").write_text("RECORD = 1\n")
    (source / "unused.py").write_text("")
    return source


def test_the_closure_follows_lazy_names_and_imports_inside_functions(tmp_path):
    source = _components(tmp_path)
    bundle = _bundle(tmp_path, '{"saver": {"_target_": "scripts.common.handlers.Saver"}}')
    assert bundle_closure(source, bundle) == {
        "__init__.py", "handlers/__init__.py", "handlers/saving.py", "outputs.py", "data.py",
    }  # fmt: skip
    scripted = _bundle(tmp_path / "b", "{}", "from .common.handlers import Loader\n")
    assert bundle_closure(source, scripted) == {"__init__.py", "handlers/__init__.py", "handlers/loading.py", "data.py"}


def test_a_config_naming_a_missing_component_is_refused_with_the_file(tmp_path):
    source = _components(tmp_path)
    bundle = _bundle(tmp_path, '{"x": "$scripts.common.handlers.Missing()"}')
    with pytest.raises(ValueError, match=r"inference\.json: 'handlers\.Missing' names no module"):
        bundle_closure(source, bundle)


def test_the_ensemble_carries_no_training_handler_and_every_copy_only_what_it_imports():
    source = REPO / "src" / "brats_grading" / "components"
    for bundle in sorted((REPO / "bundles").iterdir()):
        common = bundle / "scripts" / "common"
        present = {p.relative_to(common).as_posix() for p in common.rglob("*.py") if "__pycache__" not in p.parts}
        assert present == bundle_closure(source, bundle), bundle.name
    ensemble = {p.name for p in (REPO / "bundles" / "ensemble" / "scripts" / "common" / "handlers").glob("*.py")}
    training = {"checkpoints.py", "early_stopping.py", "ema.py", "faults.py", "metrics.py", "publishing.py",
                "run_report.py", "training_controls.py"}  # fmt: skip
    assert ensemble and not ensemble & training


def test_handlers_are_imported_on_first_use():
    code = (
        "import sys; import brats_grading.components.handlers as h\n"
        "assert 'brats_grading.components.handlers.ema' not in sys.modules\n"
        "assert h.OptimizerStepEMAHandler.__module__ == 'brats_grading.components.handlers.ema'\n"
        "assert 'OptimizerStepEMAHandler' in dir(h) and set(h.__all__) <= set(dir(h))\n"
        "try:\n    h.NoSuchHandler\nexcept AttributeError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, failure_text(result)
    assert "has no attribute 'NoSuchHandler'" in result.stdout
