"""scripts/verify_bundle.py: every bundle passes the model zoo's checks; broken copies fail the check they break."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, copy_bundle, failure_text

from brats_grading.components.bundle_env import bundle_importable
from brats_grading.recipes import MALLOC_SETTINGS
from brats_grading.zoo.export import write_large_files
from brats_grading.zoo.verify import CHECK_NAMES, verify_bundle

BUNDLES = ("resnet50_3d_ldam", "swin_unetr_cls", "ensemble")


def _edit_json(path: Path, edit) -> None:
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content, indent=4) + "\n")


def _result(bundle: Path, check: str):
    (result,) = verify_bundle(bundle, only=[check])
    return result


def _published(bundle: Path) -> Path:
    """The bundle as export_bundle.py leaves it: models/model.pt (random weights here) listed in
    large_files.yml with its sha256 and a URL that serves it (the folder itself, as file://)."""
    from monai.bundle import ConfigParser

    with bundle_importable(bundle):
        parser = ConfigParser(json.loads((bundle / "configs" / "inference.json").read_text()))
        parser.update({"bundle_root": str(bundle)})
        torch.manual_seed(0)
        torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    write_large_files(bundle, ["models/model.pt"], bundle.as_uri(), "0")
    return bundle


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_every_published_bundle_passes_every_zoo_check(name, tmp_path):
    for member in ("resnet50_3d_ldam", "swin_unetr_cls") if name == "ensemble" else ():
        copy_bundle(member, tmp_path)  # the ensemble's default members are its sibling bundles
    bundle = copy_bundle(name, tmp_path)
    if name != "ensemble":
        _published(bundle)
    env = {**os.environ, **MALLOC_SETTINGS}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "verify_bundle.py"), str(bundle)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL", "N/A"))]
    assert result.returncode == 0, failure_text(result)
    assert [line.split(":")[0].split(None, 1)[1] for line in lines] == list(CHECK_NAMES)
    assert not any(line.startswith("FAIL") for line in lines)
    status = {line.split(":")[0].split(None, 1)[1]: line.split()[0] for line in lines}
    exempt = {"ensemble": {"network in/out", "torchscript"}, "swin_unetr_cls": {"torchscript"}}.get(name, set())
    assert {check for check, s in status.items() if s == "N/A"} == exempt  # only what the zoo's lists exempt
    if name == "ensemble":
        assert "exclude_verify_preferred_files_list" in lines[0]
        assert "train: not applicable" in result.stdout and "inference: ok" in result.stdout
    else:
        assert "models/model.pt downloaded, hash checked" in lines[0]
        assert "train: ok; train+evaluate: ok; inference: ok" in result.stdout
    expected_export = {"swin_unetr_cls": "N/A   torchscript: traced", "resnet50_3d_ldam": "PASS  torchscript: scripted"}
    assert name == "ensemble" or expected_export[name] in result.stdout


def test_a_bundle_without_weights_fails_as_in_the_zoo(tmp_path):
    bundle = copy_bundle("resnet50_3d_ldam", tmp_path)
    files = _result(bundle, "files")
    assert not files.passed and files.detail.startswith("necessary file models/model.pt is not existing")


def test_large_files_are_downloaded_and_hash_checked_placeholders_and_missing_hashes_fail(tmp_path):
    bundle = _published(copy_bundle("resnet50_3d_ldam", tmp_path / "bundle"))
    assert _result(bundle, "files").passed
    hosted = tmp_path / "hosted"
    (hosted / "models").mkdir(parents=True)
    (hosted / "models" / "model.pt").write_bytes(b"not the published weights")
    write_large_files(bundle, ["models/model.pt"], hosted.as_uri(), "0")  # hash of the bundle's copy
    files = _result(bundle, "files")
    assert not files.passed and "Download large files in" in files.detail and "hash" in files.detail.lower()
    write_large_files(bundle, ["models/model.pt"], None, "0")
    files = _result(bundle, "files")
    assert not files.passed and "placeholder" in files.detail
    write_large_files(bundle, ["models/model.pt"], bundle.as_uri(), "0")
    text = (bundle / "large_files.yml").read_text()
    (bundle / "large_files.yml").write_text("\n".join(x for x in text.splitlines() if "hash_val" not in x) + "\n")
    files = _result(bundle, "files")
    assert not files.passed and "no hash_val" in files.detail


@pytest.fixture()
def resnet(tmp_path) -> Path:
    return copy_bundle("resnet50_3d_ldam", tmp_path)


def test_a_version_missing_from_the_changelog_fails(resnet):
    _edit_json(resnet / "configs" / "metadata.json", lambda m: m.update(version="9.9.9"))
    result = _result(resnet, "changelog")
    assert not result.passed and "9.9.9" in result.detail


def test_a_wrong_number_of_channels_fails_the_shape_check(resnet):
    _edit_json(
        resnet / "configs" / "metadata.json",
        lambda m: m["network_data_format"]["inputs"]["image"].update(num_channels=3),
    )
    result = _result(resnet, "network in/out")
    assert not result.passed and "channels" in result.detail


def test_an_absolute_path_in_a_config_fails(resnet):
    _edit_json(resnet / "configs" / "train.json", lambda c: c.update(dataset_dir="/workspace/data/BraTS"))
    _edit_json(resnet / "configs" / "inference.json", lambda c: c.update(output_dir="$'/srv/out' + '/x'"))
    result = _result(resnet, "absolute paths")
    assert not result.passed
    assert "train.json: dataset_dir = '/workspace/data/BraTS'" in result.detail
    assert "inference.json: output_dir" in result.detail
    assert "@bundle_root + '/models" not in result.detail  # a suffix appended to a path is not absolute


def test_a_missing_license_fails(resnet):
    (resnet / "LICENSE").unlink()
    result = _result(resnet, "files")
    assert not result.passed and "LICENSE" in result.detail


def test_an_unscriptable_network_without_the_trace_flag_fails(tmp_path):
    swin = copy_bundle("swin_unetr_cls", tmp_path)
    _edit_json(swin / "configs" / "inference.json", lambda c: c.update(torchscript_use_trace=False))
    result = _result(swin, "torchscript")
    assert not result.passed
    assert result.detail.startswith("scripted export failed") and "torchscript_use_trace" in result.detail


def test_pins_without_a_python_3_10_release_fail(resnet):
    _edit_json(resnet / "configs" / "metadata.json", lambda m: m.update(numpy_version="2.4.6"))
    result = _result(resnet, "pins")
    assert not result.passed and "numpy==2.4.6 has no Python 3.10 release" in result.detail


def test_a_large_file_outside_large_files_yml_fails_and_a_listed_one_passes(resnet):
    big = resnet / "models" / "model.pt"
    big.write_bytes(b"\0" * (26 * 1024 * 1024))
    assert not _result(resnet, "file sizes").passed
    from brats_grading.zoo.static_checks import file_hash

    (resnet / "large_files.yml").write_text(
        f"large_files:\n- path: models/model.pt\n  url: {big.as_uri()}\n"
        f"  hash_val: {file_hash(big)}\n  hash_type: sha256\n"
    )
    assert _result(resnet, "file sizes").passed
    assert _result(resnet, "files").passed
    big.write_bytes(b"\1" * 10)
    files = _result(resnet, "files")
    assert not files.passed and "hash_val" in files.detail


def test_formatting_catches_what_the_zoo_formatters_would_change(resnet):
    networks = resnet / "scripts" / "networks.py"
    networks.write_text(networks.read_text() + "\nx = [1,2]\n")
    (resnet / "configs" / "logging_extra.json").write_text('{"a": [1, 2]}\n')
    result = _result(resnet, "formatting")
    assert not result.passed
    assert "black" in result.detail and "flake8" in result.detail and "pretty-format-json" in result.detail


def test_formatting_catches_a_docstring_after_code_as_the_zoo_hook_does(resnet):
    helper = resnet / "scripts" / "limits.py"
    helper.write_text('"""Limits."""\n\nLIMIT = 3\n"""The limit."""\n')
    result = _result(resnet, "formatting")
    assert not result.passed
    assert "check-docstring-first" in result.detail and "limits.py" in result.detail
