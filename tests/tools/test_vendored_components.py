"""Shared components have one source: every bundle's scripts/common is a byte-identical copy."""

from __future__ import annotations

import shutil
import subprocess
import sys

from helpers import REPO, failure_text

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
