"""Every kind of bad input, through real ``monai.bundle run`` calls of the ResNet bundle: a one-line error of the
expected type naming the file or key, before any run folder is made or changed.

All scenarios run in one process (``monai.bundle.run`` per scenario) so the checks cost seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import copy_bundle, failure_text, run_bundle

from brats_grading.components.data import DatasetError
from brats_grading.components.datalist import build_datalist, write_datalist

BUNDLE = "resnet50_3d_ldam"
SMALL = {"fold": 0, "spatial_size": [16, 16, 16], "epochs": 1, "num_workers": 0, "cache": "none", "batch_size": 2}


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with a hash of its content: equal trees mean nothing changed.

    ``cache/`` is left out: the data check records there which files passed, so they are not read again.
    """
    return {
        p.relative_to(folder).as_posix(): (hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(folder.rglob("*"))
        if p.relative_to(folder).parts[0] != "cache"
    }


def existing_run(output_dir: Path) -> Path:
    """A finished run from before: its files must come out of every failed call untouched."""
    run = output_dir / "fold_0" / "run_20200101_000000"
    for sub, name, text in (("metrics", "metrics.json", '{"auc": 0.9}'), ("checkpoints", "last.pt", "weights")):
        (run / sub).mkdir(parents=True, exist_ok=True)
        (run / sub / name).write_text(text)
    (output_dir / "predictions.csv").write_text("id,prob_hgg\nold,0.5\n")
    return run


def dataset_copy(small_brats: Path, where: Path) -> Path:
    return Path(shutil.copytree(small_brats, where, ignore=shutil.ignore_patterns("cache")))


def a_case_file(dataset: Path, modality: str = "flair") -> Path:
    """The ``modality`` file of the first validation case of fold 0 (so train and evaluate both read it)."""
    datalist = json.loads((dataset / "datalist.json").read_text())
    case = next(r for r in datalist["training"] if r["fold"] == 0)
    return dataset / case["image"][datalist["channel_order"].index(modality)]


def rewrite_volume(path: Path, change) -> None:
    image = nib.load(path)
    data, affine = change(np.asanyarray(image.dataobj).astype(np.float32), image.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), path)


def edit_datalist(dataset: Path, change) -> None:
    path = dataset / "datalist.json"
    content = json.loads(path.read_text())
    change(content["training"])
    path.write_text(json.dumps(content, indent=2))


def _nan_block(data, affine):
    data[:3, :3, :3] = np.nan
    return data, affine


def _set_flair_label(value):
    def change(items):
        items[0]["label"] = value

    return change


def _empty_fold_0(items):
    for item in items:
        if item["fold"] == 0:
            item["fold"] = 1


def _all_lgg_in_fold_0(items):
    for item in items:
        if item["label"] == 0:
            item["fold"] = 0


def _outside_path(items):
    items[0]["image"][0] = "../../outside/" + Path(items[0]["image"][0]).name


# name -> (config files, dataset change, expected error type, words the message must hold)
DATA_FAULTS = {
    "missing_modality": (lambda d: a_case_file(d).unlink(), "DataValidationError", ["missing file", "_flair.nii.gz"]),
    "truncated_file": (
        lambda d: a_case_file(d).write_bytes(a_case_file(d).read_bytes()[:600]),
        "DataValidationError",
        ["truncated or corrupt", "_flair.nii.gz"],
    ),
    "shape_mismatch": (
        lambda d: rewrite_volume(a_case_file(d), lambda x, a: (x[:-1], a)),
        "DataValidationError",
        ["has shape", "_flair.nii.gz"],
    ),
    "affine_mismatch": (
        lambda d: rewrite_volume(a_case_file(d), lambda x, a: (x, a @ np.diag([1.0, 1.0, 1.2, 1.0]))),
        "DataValidationError",
        ["affine", "_flair.nii.gz"],
    ),
    "nan_voxels": (
        lambda d: rewrite_volume(a_case_file(d), _nan_block),
        "DataValidationError",
        ["NaN or Inf", "_flair.nii.gz"],
    ),
    "all_zero_volume": (
        lambda d: rewrite_volume(a_case_file(d), lambda x, a: (np.zeros_like(x), a)),
        "DataValidationError",
        ["every voxel is 0", "_flair.nii.gz"],
    ),
    "label_outside_0_1": (
        lambda d: edit_datalist(d, _set_flair_label(2)),
        "DatasetError",
        ["datalist.json", "label 2", "expected 0 (LGG) or 1 (HGG)"],
    ),
    "empty_fold": (lambda d: edit_datalist(d, _empty_fold_0), "DatasetError", ["datalist.json", "fold 0 is empty"]),
    "class_absent_from_training": (
        lambda d: edit_datalist(d, _all_lgg_in_fold_0),
        "DataValidationError",
        ["datalist.json", "fold 0", "no LGG"],
    ),
    "path_outside_dataset": (
        lambda d: edit_datalist(d, _outside_path),
        "DatasetError",
        ["datalist.json", "outside the dataset folder", "../../outside/"],
    ),
}

SCENARIO_RUNNER = """
import json, pickle, sys, pathlib, torch
sys.path.insert(0, ".")
from monai.bundle import ConfigParser, run

plan = json.loads(pathlib.Path(sys.argv[1]).read_text())
work = pathlib.Path(plan["work"])

class RunsCode:
    def __reduce__(self):
        return (pathlib.Path.touch, (work / "code_ran",))

def network(**overrides):
    parser = ConfigParser()
    parser.read_config("configs/inference.json")
    parser.update(overrides)
    return parser.get_parsed_content("network_def")

torch.save({"model": network().state_dict()}, work / "good.pt")
torch.save({"model": network(modalities=["flair"]).state_dict()}, work / "one_channel.pt")
from monai.networks.nets import DenseNet121
torch.save({"model": DenseNet121(spatial_dims=3, in_channels=4, out_channels=2).state_dict()}, work / "densenet.pt")
torch.save({"model": RunsCode(), "metrics": {}}, work / "pickled_code.pt")

results = {}
for name, scenario in plan["scenarios"].items():
    try:
        run(config_file=scenario["configs"], logging_file="configs/logging.conf", **scenario["overrides"])
        results[name] = []
    except BaseException as err:
        chain, seen = [], err
        while seen is not None:
            chain.append([type(seen).__name__, str(seen)])
            seen = seen.__cause__ or seen.__context__
        results[name] = chain
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def outcomes(small_brats, tmp_path_factory) -> dict:
    """Run every scenario once; returns ``{name: {"chain": [[type, message], ...], "before", "after", "run"}}``."""
    work = tmp_path_factory.mktemp("bad_input")
    bundle = copy_bundle(BUNDLE, work)
    scenarios, folders = {}, {}
    for name, (change, _, _) in DATA_FAULTS.items():
        dataset = dataset_copy(small_brats, work / f"data_{name}")
        change(dataset)
        configs = ["configs/train.json"]
        scenarios[name] = {"configs": configs, "overrides": {**SMALL, "dataset_dir": str(dataset)}}
    good = str(small_brats)
    scenarios["mistyped_override"] = {"configs": ["configs/train.json"], "overrides": {**SMALL, "dataset_dir": good}}
    scenarios["mistyped_override"]["overrides"]["epoch"] = 1
    (work / "a_file").write_text("not a folder")
    scenarios["output_not_writable"] = {
        "configs": ["configs/train.json"],
        "overrides": {**SMALL, "dataset_dir": good, "output_dir": str(work / "a_file" / "runs")},
    }
    inference = {"dataset_dir": good, "spatial_size": [16, 16, 16], "num_workers": 0}
    for name, checkpoint in (
        ("checkpoint_other_channels", "one_channel.pt"),
        ("checkpoint_other_architecture", "densenet.pt"),
        ("checkpoint_with_pickled_code", "pickled_code.pt"),
    ):
        scenarios[name] = {
            "configs": ["configs/inference.json"],
            "overrides": {**inference, "checkpoint": str(work / checkpoint)},
        }
    scenarios["evaluate_other_channels"] = {
        "configs": ["configs/train.json", "configs/evaluate.json"],
        "overrides": {**SMALL, "dataset_dir": good, "checkpoint": str(work / "one_channel.pt")},
    }
    for name, scenario in scenarios.items():
        output = work / f"out_{name}"
        scenario["overrides"].setdefault("output_dir", str(output))
        folders[name] = output
        existing_run(output)
    before = {name: tree(folder) for name, folder in folders.items()}
    plan = work / "plan.json"
    plan.write_text(json.dumps({"work": str(work), "scenarios": scenarios}))
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO_RUNNER, str(plan)], cwd=bundle, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, failure_text(result)
    chains = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        name: {"chain": chains[name], "before": before[name], "after": tree(folders[name]), "work": work}
        for name in scenarios
    }


def the_error(outcome: dict, type_name: str) -> str:
    """The message of the first error of ``type_name`` in the exception chain (config evaluation wraps it)."""
    chain = outcome["chain"]
    assert chain, "the run succeeded"
    found = [message for name, message in chain if name == type_name]
    assert found, f"no {type_name} in {[name for name, _ in chain]}: {chain[0][1][:500]}"
    return found[0]


def assert_nothing_changed(outcome: dict) -> None:
    assert outcome["after"] == outcome["before"]


@pytest.mark.parametrize("name", sorted(DATA_FAULTS))
def test_bad_data_stops_training_before_the_first_epoch_naming_file_or_key(outcomes, name):
    _, type_name, words = DATA_FAULTS[name]
    message = the_error(outcomes[name], type_name)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    assert_nothing_changed(outcomes[name])


def test_a_mistyped_override_is_refused_with_the_key_it_meant(outcomes):
    message = the_error(outcomes["mistyped_override"], "ConfigKeyError")
    assert "'epoch'" in message and "did you mean 'epochs'" in message
    assert_nothing_changed(outcomes["mistyped_override"])


def test_an_output_folder_that_cannot_be_written_is_named(outcomes):
    message = the_error(outcomes["output_not_writable"], "PermissionError")
    assert "a_file/runs" in message and "not writable" in message
    assert (outcomes["output_not_writable"]["work"] / "a_file").read_text() == "not a folder"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("checkpoint_other_channels", ["one_channel.pt", "conv1.weight", "[64, 1, 7, 7, 7]", "[64, 4, 7, 7, 7]"]),
        ("checkpoint_other_architecture", ["densenet.pt", "does not fit", "tensors missing from the file"]),
        ("evaluate_other_channels", ["one_channel.pt", "conv1.weight"]),
    ],
)
def test_a_checkpoint_of_another_network_is_refused_before_inference_or_evaluation(outcomes, name, words):
    message = the_error(outcomes[name], "CheckpointMismatchError")
    for word in words:
        assert word in message, (word, message)
    assert_nothing_changed(outcomes[name])


def test_a_checkpoint_holding_pickled_code_is_refused_and_its_code_never_runs(outcomes):
    message = the_error(outcomes["checkpoint_with_pickled_code"], "UntrustedFileError")
    assert "pickled_code.pt" in message and "refused" in message and "it references getattr" in message
    assert not (outcomes["checkpoint_with_pickled_code"]["work"] / "code_ran").exists()
    assert_nothing_changed(outcomes["checkpoint_with_pickled_code"])


def test_the_datalist_builder_refuses_an_unknown_grade_folder_and_keeps_the_old_datalist(small_brats, tmp_path):
    dataset = dataset_copy(small_brats, tmp_path / "data")
    before = (dataset / "datalist.json").read_bytes()
    shutil.copytree(next((dataset / "LGG").iterdir()), dataset / "GBM" / "case_x")
    with pytest.raises(DatasetError, match=r"unknown grade folder\(s\) \['GBM'\]"):
        write_datalist(build_datalist(dataset), dataset / "datalist.json")
    assert (dataset / "datalist.json").read_bytes() == before


def test_check_data_lists_every_bad_case_and_exits_1(small_brats, tmp_path):
    dataset = dataset_copy(small_brats, tmp_path / "data")
    DATA_FAULTS["truncated_file"][0](dataset)
    edit_datalist(dataset, _all_lgg_in_fold_0)
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_data.py"
    result = subprocess.run([sys.executable, str(script), str(dataset)], capture_output=True, text=True)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    assert any("truncated or corrupt" in line for line in errors)
    assert sum("no LGG" in line for line in errors) == 1  # fold 0: its training split lost every LGG case
    clean = subprocess.run([sys.executable, str(script), str(small_brats)], capture_output=True, text=True)
    assert clean.returncode == 0 and "0 problem(s)" in clean.stdout


def test_batch_inference_grades_the_good_cases_and_reports_the_bad_one(outcomes, small_brats, tmp_path):
    """A real CLI inference over a folder with one truncated case: 19 predictions, 1 reason, exit status 1."""
    work = outcomes["mistyped_override"]["work"]
    bundle = work / BUNDLE
    dataset = dataset_copy(small_brats, tmp_path / "data")
    (dataset / "datalist.json").unlink()
    bad_file = a_case_file(small_brats)  # same relative place in the copy
    broken = dataset / bad_file.relative_to(small_brats)
    broken.write_bytes(broken.read_bytes()[:600])
    common = ["--dataset_dir", str(dataset), "--checkpoint", str(work / "good.pt"), "--spatial_size", "[16,16,16]"]
    common += ["--num_workers", "2", "--batch_size", "3", "--output_dir", str(tmp_path / "out")]
    result = run_bundle(bundle, ["inference.json"], *common, check=False)
    assert result.returncode != 0
    assert "BatchInferenceError" in result.stderr and "1 of 20 cases could not be graded" in result.stderr
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    failed = (tmp_path / "out" / "predictions_failed.csv").read_text().splitlines()
    case_id = broken.parent.name
    assert len(rows) == 1 + 19 and not any(r.startswith(case_id + ",") for r in rows)
    assert len(failed) == 2 and failed[1].startswith(case_id + ",") and broken.name in failed[1]
    strict = run_bundle(bundle, ["inference.json"], *common, "--strict", "True", check=False)
    assert strict.returncode != 0 and "strict mode: stopped at the first bad case" in strict.stderr
    assert broken.name in strict.stderr
    assert not (tmp_path / "out" / "predictions_1.csv").exists()  # nothing written in strict mode
