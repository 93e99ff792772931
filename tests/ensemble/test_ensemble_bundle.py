"""The ensemble bundle end to end: members with other channels and sizes, TorchScript members, evaluate, stacking.

Members here have random weights (with a stored operating point): what is tested is that the ensemble
feeds and scores every member exactly as the member's own bundle does, not that they learned.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    REPO,
    copy_bundle,
    failure_text,
    import_bundle_scripts,
    parsed_config_item,
    read_csv,
    run_bundle,
    run_in_bundle,
)
from monai.transforms import Compose
from sklearn.metrics import roc_auc_score

from brats_grading.components.data import load_records
from brats_grading.zoo.verify import verify_bundle

pytestmark = pytest.mark.slow
BUNDLE = "ensemble"

#: a FLAIR-only ResNet at 48^3 and a 4-channel Swin at 32^3
MEMBERS = {
    "resnet_flair": (
        "resnet50_3d_ldam",
        {"modalities": ["flair"], "spatial_size": [48, 48, 48], "layout": "strided"},
        {"temperature": 2.0, "threshold": 0.4},
    ),
    "swin": (
        "swin_unetr_cls",
        {"spatial_size": [32, 32, 32], "feature_size": 12},
        {"temperature": 0.5, "threshold": 0.6},
    ),
}


def _cli(overrides: dict) -> list[str]:
    return [a for k, v in overrides.items() for a in (f"--{k}", json.dumps(v))]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> dict:
    """Each member: a copy of its bundle, a random-weight checkpoint, its operating point, its own predictions."""
    work = tmp_path_factory.mktemp("members")
    made = {}
    for name, (bundle_name, overrides, point) in MEMBERS.items():
        bundle = copy_bundle(bundle_name, work / name)
        checkpoint = work / name / "model.pt"
        run_in_bundle(
            bundle,
            f"""
torch.manual_seed(0)
net = bundle_parser("inference.json", **{overrides!r}).get_parsed_content("network_def")
torch.save(net.state_dict(), {str(checkpoint)!r})
print("{{}}")
""",
        )
        (work / name / "model.operating_point.json").write_text(json.dumps(point))
        made[name] = {"bundle": bundle, "checkpoint": checkpoint, "overrides": overrides}
    return made


@pytest.fixture(scope="module")
def own_predictions(members, small_brats, tmp_path_factory) -> dict:
    """Each member's P(HGG) from its own bundle's inference.json, in float32 as the ensemble runs its members."""
    out = tmp_path_factory.mktemp("own")
    probs = {}
    for name, member in members.items():
        csv_path = out / f"{name}.csv"
        run_bundle(
            member["bundle"], ["inference.json"], "--input", str(small_brats), "--checkpoint", str(member["checkpoint"]),
            "--output_file", str(csv_path), "--num_workers", "0", "--amp", "False", "--channels_last", "False",
            *_cli(member["overrides"]),
        )  # fmt: skip
        probs[name] = {r["id"]: float(r["prob_hgg"]) for r in read_csv(csv_path)}
    return probs


def _member_specs(members: dict, names: list[str]) -> list[dict]:
    return [
        {"name": n, "bundle": str(members[n]["bundle"]), "checkpoints": [str(members[n]["checkpoint"])],
         "overrides": members[n]["overrides"]}
        for n in names
    ]  # fmt: skip


def _ensemble(bundle: Path, configs: list[str], members: list[dict], *overrides: str) -> None:
    (bundle / "configs" / "members_test.json").write_text(json.dumps({"members": members}, indent=4))
    run_bundle(bundle, [*configs, "members_test.json"], "--num_workers", "0", *overrides)


def test_members_with_other_channels_and_sizes_equal_their_own_bundles(
    bundle, members, own_predictions, small_brats, tmp_path
):
    out = tmp_path / "ensemble.csv"
    _ensemble(bundle, ["inference.json"], _member_specs(members, ["resnet_flair", "swin"]),
              "--input", str(small_brats), "--output_file", str(out), "--weights", "[3, 1]")  # fmt: skip
    rows = read_csv(out)
    assert len(rows) == len(own_predictions["swin"]) == 20
    assert list(rows[0]) == ["id", "prob_hgg", "predicted_grade", "prob_resnet_flair", "prob_swin", "true_grade"]
    for row in rows:
        for name in MEMBERS:
            assert float(row[f"prob_{name}"]) == pytest.approx(own_predictions[name][row["id"]], abs=1e-5), name
        expected = (3 * float(row["prob_resnet_flair"]) + float(row["prob_swin"])) / 4
        assert float(row["prob_hgg"]) == pytest.approx(expected, abs=1e-12)
        assert row["predicted_grade"] == ("HGG" if expected >= 0.5 else "LGG")


def _preprocessed(bundle: Path, config: dict, overrides: dict, record: dict, key: str = "preprocessing"):
    """``record`` through the ``key`` transforms of a bundle's inference config."""
    content = parsed_config_item(bundle, config, key, **overrides)
    return (Compose(content) if isinstance(content, list) else content)(dict(record))


def test_a_member_is_fed_by_the_network_input_of_its_own_inference_json(members, small_brats, tmp_path):
    """Edit one step of a member's own ``network_input``: the ensemble feeds the member the edited input."""
    source = members["resnet_flair"]
    bundle = copy_bundle("resnet50_3d_ldam", tmp_path / "edited")
    config_file = bundle / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    next(t for t in config["network_input"] if t["_target_"] == "Resized")["mode"] = "nearest"
    config_file.write_text(json.dumps(config, indent=4))
    spec = {
        "name": "edited",
        "bundle": str(bundle),
        "checkpoints": [str(source["checkpoint"])],
        "overrides": source["overrides"],
    }
    member = import_bundle_scripts(BUNDLE, "members").load_member(spec)
    inputs = import_bundle_scripts(BUNDLE, "inputs")

    case = load_records(small_brats / "datalist.json")[0]
    flair = {**case, "image": case["image"][3:]}  # records list t1, t1ce, t2, flair
    ensemble = REPO / "bundles" / BUNDLE
    loaded = _preprocessed(
        ensemble, json.loads((ensemble / "configs" / "inference.json").read_text()), {}, flair, "loading"
    )
    fed = inputs.MemberInputsd([member], ["flair"])(loaded)[inputs.member_key(member)]

    own = _preprocessed(bundle, config, source["overrides"], flair)["image"]
    original = REPO / "bundles" / "resnet50_3d_ldam"
    unedited = json.loads((original / "configs" / "inference.json").read_text())
    assert torch.equal(fed, own)
    assert not torch.equal(fed, _preprocessed(original, unedited, source["overrides"], flair)["image"])


def test_one_member_ensemble_is_that_member(bundle, members, own_predictions, small_brats, tmp_path):
    out = tmp_path / "one.csv"
    _ensemble(bundle, ["inference.json"], _member_specs(members, ["swin"]), "--input", str(small_brats),
              "--output_file", str(out))  # fmt: skip
    for row in read_csv(out):
        assert float(row["prob_hgg"]) == pytest.approx(own_predictions["swin"][row["id"]], abs=1e-5)
        assert row["predicted_grade"] == ("HGG" if float(row["prob_hgg"]) >= 0.5 else "LGG")


def test_a_bad_case_is_reported_and_the_others_are_still_graded(
    bundle, members, own_predictions, small_brats, tmp_path
):
    dataset = Path(shutil.copytree(small_brats, tmp_path / "data"))
    (dataset / "datalist.json").unlink()
    broken = sorted(dataset.glob("LGG/*/*_t2.nii.gz"))[0]
    broken.write_bytes(broken.read_bytes()[:500])
    out = tmp_path / "ensemble.csv"
    (bundle / "configs" / "members_test.json").write_text(json.dumps({"members": _member_specs(members, ["swin"])}))
    result = run_bundle(
        bundle, ["inference.json", "members_test.json"], "--input", str(dataset), "--output_file", str(out),
        "--num_workers", "0", check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "1 of 20 cases could not be graded" in result.stderr
    rows = {r["id"]: r for r in read_csv(out)}
    assert len(rows) == 19 and broken.parent.name not in rows
    for case_id, row in rows.items():
        assert float(row["prob_hgg"]) == pytest.approx(own_predictions["swin"][case_id], abs=1e-5)
    failed = read_csv(tmp_path / "ensemble_failed.csv")
    assert [r["id"] for r in failed] == [broken.parent.name] and broken.name in failed[0]["reason"]


def test_the_exported_ensemble_unzipped_alone_equals_the_run_from_the_source_tree(members, small_brats, tmp_path):
    """export_bundle.py packs both members as TorchScript into the ensemble; unzipped in an empty folder
    (no sibling bundles, the repository off sys.path) it predicts what the source-tree run predicts."""
    source = copy_bundle(BUNDLE, tmp_path / "source")
    specs = _member_specs(members, ["resnet_flair", "swin"])
    from_source = tmp_path / "source.csv"
    _ensemble(source, ["inference.json"], specs, "--input", str(small_brats), "--output_file", str(from_source),
              "--weights", "[3, 1]")  # fmt: skip
    (source / "configs" / "members_test.json").unlink()
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "export_bundle.py"), str(source), "--members", json.dumps(specs),
         "--output_dir", str(dist), "--url", (dist / BUNDLE).as_uri()],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, failure_text(result)
    alone = tmp_path / "alone"
    summary = json.loads(result.stdout[result.stdout.rindex("\n{\n") + 1 :])  # after ckpt_export's log lines
    with zipfile.ZipFile(summary["archive"]) as archive:
        archive.extractall(alone)
    unzipped = alone / BUNDLE
    packed = json.loads((unzipped / "configs" / "inference.json").read_text())["members"]
    assert [m["name"] for m in packed] == ["resnet_flair", "swin"] and ".." not in json.dumps(packed)
    for name in ("resnet_flair", "swin"):
        folder = unzipped / "models" / "members" / name
        assert (folder / "model_0.ts").is_file() and (folder / "model_0.operating_point.json").is_file()
    large_files = (unzipped / "large_files.yml").read_text()
    assert f"{(dist / BUNDLE).as_uri()}/models/members/swin/model_0.ts" in large_files  # the staged copy serves
    checks = {r.name: r for r in verify_bundle(unzipped, only=["files", "workflow properties", "network in/out"])}
    assert all(r.passed for r in checks.values()), [r.line() for r in checks.values()]
    assert (
        "exclude_verify_preferred_files_list" in checks["files"].detail
        and "inference: ok" in checks["workflow properties"].detail
    )
    alone_csv = tmp_path / "alone.csv"
    run_bundle(unzipped, ["inference.json"], "--input", str(small_brats), "--output_file", str(alone_csv),
               "--num_workers", "0", "--weights", "[3, 1]")  # fmt: skip
    expected = {r["id"]: r for r in read_csv(from_source)}
    rows = read_csv(alone_csv)
    assert sorted(r["id"] for r in rows) == sorted(expected) and len(rows) == 20
    for row in rows:
        for column in ("prob_hgg", "prob_resnet_flair", "prob_swin"):
            assert float(row[column]) == pytest.approx(float(expected[row["id"]][column]), abs=1e-5), column
        assert row["predicted_grade"] == expected[row["id"]]["predicted_grade"]


def test_evaluate_compares_members_and_ensemble_on_the_same_cases(
    bundle, members, small_brats, small_datalist, tmp_path
):
    output = tmp_path / "runs"
    _ensemble(bundle, ["inference.json", "evaluate.json"], _member_specs(members, ["resnet_flair", "swin"]),
              "--dataset_dir", str(small_brats), "--output_dir", str(output), "--method", "majority_vote")  # fmt: skip
    run_dir = next((output / "all").glob("eval_*"))
    rows = read_csv(run_dir / "predictions" / "ensemble_predictions.csv")
    labels = {r["id"]: r["label"] for r in small_datalist["training"]}
    assert sorted(r["id"] for r in rows) == sorted(labels)
    assert all(r["true_grade"] == ("HGG" if labels[r["id"]] else "LGG") for r in rows)
    votes = [(float(r["prob_resnet_flair"]) >= 0.4) + (float(r["prob_swin"]) >= 0.6) for r in rows]
    np.testing.assert_allclose([float(r["prob_hgg"]) for r in rows], np.array(votes) / 2)
    metrics = json.loads((run_dir / "ensemble_metrics.json").read_text())
    # the chosen method, then every other method on the same cases (no stacking file here: no stacking row)
    assert list(metrics["rows"]) == ["resnet_flair", "swin", "ensemble", "mean", "majority_vote"]
    y = [labels[r["id"]] for r in rows]
    for name, column in (("swin", "prob_swin"), ("ensemble", "prob_hgg")):
        assert metrics["rows"][name]["auc"] == pytest.approx(roc_auc_score(y, [float(r[column]) for r in rows]))
        assert metrics["rows"][name]["num_cases"] == 20
    mean = [(float(r["prob_resnet_flair"]) + float(r["prob_swin"])) / 2 for r in rows]
    assert metrics["rows"]["mean"]["auc"] == pytest.approx(roc_auc_score(y, mean))
    assert set(metrics["versus_best_member"]) == {"ensemble", "mean", "majority_vote"}
    diversity = json.loads((run_dir / "diversity.json").read_text())
    assert diversity["pairs"][0]["members"] == ["resnet_flair", "swin"]
    assert set(diversity["recall"]) == {"resnet_flair", "swin"}
    assert (run_dir / "plots" / "roc_members.png").is_file() and (run_dir / "ensemble_metrics.md").is_file()


def test_stacking_is_fitted_out_of_fold_then_used_by_inference(tiny_cv, small_brats, tmp_path):
    bundle = copy_bundle(BUNDLE, tmp_path)
    members = [{"name": "fold_models", "cv_dir": str(tiny_cv)}, {"name": "fold_models_again", "cv_dir": str(tiny_cv)}]
    stacking_file = tmp_path / "stacking.json"
    tracking_uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    _ensemble(bundle, ["inference.json", "train.json"], members, "--dataset_dir", str(small_brats),
              "--output_dir", str(tmp_path / "runs"), "--stacking_file", str(stacking_file),
              "--tracking", "mlflow", "--tracking_uri", tracking_uri)  # fmt: skip
    fitted = json.loads(stacking_file.read_text())
    _the_fit_is_one_finished_mlflow_run_with_its_files(tracking_uri)
    assert fitted["members"] == ["fold_models", "fold_models_again"] and fitted["fitted_on"]["cases"] == 8
    report = json.loads(next((tmp_path / "runs" / "all").glob("fit_*/ensemble_metrics.json")).read_text())
    assert "stacking (nested)" in report["rows"] and report["rows"]["fold_models"]["num_cases"] == 8
    out = tmp_path / "stacked.csv"
    _ensemble(bundle, ["inference.json"], members, "--input", str(small_brats), "--output_file", str(out),
              "--method", "stacking", "--stacking_file", str(stacking_file))  # fmt: skip
    for row in read_csv(out):
        p = np.clip([float(row["prob_fold_models"]), float(row["prob_fold_models_again"])], 1e-6, 1 - 1e-6)
        z = np.log(p / (1 - p)) @ np.array(fitted["coef"]) + fitted["intercept"]
        assert float(row["prob_hgg"]) == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-9)
    # the members are the same model, so any weights give the same mean: written weights of 0.9 / 0.1 must
    # still be read and used without error (test_combination checks that they weigh each member)
    stacking_file.write_text(json.dumps({**fitted, "mean_weights": [0.9, 0.1]}))
    out = tmp_path / "fitted_mean.csv"
    _ensemble(bundle, ["inference.json"], members, "--input", str(small_brats), "--output_file", str(out),
              "--method", "mean", "--weights", "fitted", "--stacking_file", str(stacking_file))  # fmt: skip
    for row in read_csv(out):
        expected = 0.9 * float(row["prob_fold_models"]) + 0.1 * float(row["prob_fold_models_again"])
        assert float(row["prob_hgg"]) == pytest.approx(expected, abs=1e-12)


def _the_fit_is_one_finished_mlflow_run_with_its_files(tracking_uri: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("monai_experiment").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["stacking_c"] == "1.0"
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "stacking.json" in files and any(f.startswith("config_") for f in files)
    fit_dir = next(f for f in files if f.startswith("fit_"))
    assert "ensemble_metrics.json" in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, fit_dir)}


def test_multi_gpu_fit_under_torchrun_fits_once(tiny_cv, small_brats, tmp_path):
    bundle = copy_bundle(BUNDLE, tmp_path)
    members = [{"name": "fold_models", "cv_dir": str(tiny_cv)}]
    (bundle / "configs" / "members_test.json").write_text(json.dumps({"members": members}))
    configs = (
        "['configs/inference.json','configs/train.json','configs/multi_gpu_train.json','configs/members_test.json']"
    )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "--config_file", configs, "--logging_file", "configs/logging.conf",
        "--dataset_dir", str(small_brats), "--output_dir", str(tmp_path / "runs"),
        "--stacking_file", str(tmp_path / "stacking.json"),
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, failure_text(result)
    assert len(list((tmp_path / "runs" / "all").glob("fit_*"))) == 1
    assert json.loads((tmp_path / "stacking.json").read_text())["members"] == ["fold_models"]
    assert not (tmp_path / "stacking.previous.json").exists()  # written once, by rank 0


def test_the_mean_uses_fitted_weights_once_they_were_fitted_and_equal_weights_before(tmp_path):
    """On the recorded runs no combination beat the best member; the fitted-weight mean was never worse."""
    folder = REPO / "bundles" / BUNDLE
    config = json.loads((folder / "configs" / "inference.json").read_text())
    stacking_file = tmp_path / "stacking.json"
    assert parsed_config_item(folder, config, "weights", stacking_file=str(stacking_file)) is None
    stacking_file.write_text("{}")
    assert parsed_config_item(folder, config, "weights", stacking_file=str(stacking_file)) == "fitted"
    assert parsed_config_item(folder, config, "weights", stacking_file=str(stacking_file), weights=[1, 2]) == [1, 2]
