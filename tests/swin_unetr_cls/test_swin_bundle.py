"""The swin_unetr_cls bundle through `monai.bundle run`: train -> evaluate -> infer, sampler, LR groups, export."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import REPO, copy_bundle, failure_text, only_run_dir, read_csv, run_bundle, run_in_bundle

from brats_grading.recipes import RECIPES, cli_args
from brats_grading.zoo.export import ExportError, export_bundle
from brats_grading.zoo.onnx_export import ONNX_ATOL, ONNX_RTOL
from brats_grading.zoo.static_checks import file_hash
from brats_grading.zoo.verify import verify_bundle

pytestmark = pytest.mark.slow
BUNDLE = "swin_unetr_cls"

# the CPU recipe's network (shallow stages, max pooling, v2, no layer norm) at feature size 12: its keys must
# reach evaluation, export and the unzipped bundle's inference
SMALL = [
    "--spatial_size",
    "[32,32,32]",
    *cli_args({**RECIPES[BUNDLE].network, "feature_size": 12}),
    "--num_workers",
    "0",
]


def _bundle_files(bundle: Path) -> dict[str, int]:
    return {
        p.relative_to(bundle).as_posix(): p.stat().st_size for p in bundle.rglob("*") if "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def bundle_before_training(bundle) -> dict[str, int]:
    return _bundle_files(bundle)


@pytest.fixture(scope="module")
def trained(bundle, bundle_before_training, small_brats) -> Path:
    """Training with the default output folder and without publishing, as a downloaded bundle runs it."""
    run_bundle(bundle, ["train.json"], "--dataset_dir", str(small_brats), *SMALL, "--epochs", "1")
    return only_run_dir(bundle.parent / f"{bundle.name}_runs")


def test_training_writes_nothing_into_the_bundle_folder(trained, bundle, bundle_before_training):
    assert _bundle_files(bundle) == bundle_before_training
    assert not (bundle / "models" / "model.pt").exists()


def test_train_writes_checkpoints_and_metrics(trained):
    for name in ("checkpoints/best.pt", "checkpoints/best_ema.pt", "checkpoints/last.pt", "metrics/metrics.json"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics" / "metrics.json").read_text())
    assert [e for e, _ in metrics["history"]["train_loss"]] == [1]
    assert metrics["final"]["source"] in ("val", "val_ema") and metrics["final"]["auc"] is not None
    weights = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert all(k.startswith(("swinViT.", "head.")) for k in weights)
    assert any(".layers1c." in k for k in weights) and not any(".layers2" in k for k in weights)  # v2, stages 0-1


def test_weighted_sampler_balances_a_2_8_to_1_training_set(bundle, small_brats):
    counts = run_in_bundle(
        bundle,
        """
import torch
parser = bundle_parser("train.json")
parser["train_records"] = [{"id": str(i), "label": int(i < 280), "image": []} for i in range(380)]
sampler = parser.get_parsed_content("train#sampler")
torch.manual_seed(0)
labels = [parser["train_records"][i]["label"] for _ in range(10) for i in sampler]
print(json.dumps({"hgg": sum(labels), "lgg": len(labels) - sum(labels)}))
""",
    )
    ratio = counts["hgg"] / counts["lgg"]
    assert 0.9 < ratio < 1.1, counts


def test_param_groups_carry_two_learning_rates_and_schedule_warms_up_then_decays(bundle, small_brats):
    result = run_in_bundle(
        bundle,
        f"""
parser = bundle_parser("train.json", feature_size=12, epochs=20, dataset_dir={str(small_brats)!r})
optimizer = parser.get_parsed_content("optimizer")
network = parser.get_parsed_content("network")
scheduler = parser.get_parsed_content("lr_scheduler")
encoder = {{id(p) for p in network.swinViT.parameters()}}
groups = [(g["initial_lr"], all(id(p) in encoder for p in g["params"]), len(g["params"])) for g in optimizer.param_groups]
lrs = []
for _ in range(20):
    lrs.append([g["lr"] for g in optimizer.param_groups])
    optimizer.step(); scheduler.step()
total = sum(1 for _ in network.parameters())
print(json.dumps({{"groups": groups, "lrs": lrs, "total": total}}))
""",
    )
    (enc_lr, enc_only, n_enc), (head_lr, head_enc, n_head) = result["groups"]
    assert (enc_lr, enc_only, head_lr, head_enc) == (5e-5, True, 1e-4, False)
    assert n_enc + n_head == result["total"]
    head = [lr[1] for lr in result["lrs"]]
    assert head[0] < head[4] and head[5] == pytest.approx(1e-4)  # 5 warm-up epochs
    assert all(a >= b for a, b in zip(head[5:], head[6:], strict=False))  # cosine decay
    assert head[-1] < 1e-5 and min(head) >= 1e-6
    assert result["lrs"][5][0] == pytest.approx(5e-5)


LOAD_AND_RUN = """
import json, os, sys
sys.modules["brats_grading"] = None
sys.path = [p for p in sys.path if not p.startswith({src!r})]
import torch
import monai
from monai.bundle import create_workflow

before = sorted(os.listdir("."))
network = monai.bundle.load(name="swin_unetr_cls", bundle_dir={root!r}, source="github", device="cpu")
after_load = sorted(os.listdir("."))
scripted = torch.jit.load("models/model.ts")
x = torch.rand(1, 4, 32, 32, 32)
with torch.no_grad():
    difference = (network.eval()(x) - scripted(x)).abs().max().item()
workflow = create_workflow(config_file="configs/inference.json", workflow_type="infer", logging_file=False,
                           input={cases!r}, output_dir={output!r}, num_workers=0)
missing = workflow.check_properties()
workflow.run()
workflow.finalize()
print(json.dumps({{"before": before, "after_load": after_load, "difference": difference, "missing": missing}}))
"""


def test_export_packages_a_zip_whose_inference_runs_alone(trained, small_brats, small_datalist, tmp_path):
    """export_bundle.py: weights, TorchScript, large_files.yml, zip; the unzipped bundle runs off the repository."""
    source = copy_bundle("swin_unetr_cls", tmp_path / "source")
    summary = export_bundle(source, trained, tmp_path / "dist", onnx=True, url=source.as_uri())
    assert summary["torchscript"] == "traced" and summary["onnx"]["max_abs_logit_difference"] <= ONNX_ATOL
    carried = summary["carried_settings"]
    assert carried["feature_size"] == 12 and carried["spatial_size"] == [32] * 3
    assert {k: carried[k] for k in RECIPES[BUNDLE].network if k != "feature_size"} == {
        "use_v2": True,
        "pooled_stages": [0, 1],
        "pooling": "max",
        "normalize": False,
    }
    large = (source / "large_files.yml").read_text()
    assert f'hash_val: "{file_hash(source / "models" / "model.pt")}"' in large
    assert f'url: "{source.as_uri()}/models/model.ts"' in large  # served from the folder itself here
    checks = {r.name: r for r in verify_bundle(source, only=["files", "torchscript", "file sizes", "formatting"])}
    assert all(r.passed for r in checks.values()), [r.line() for r in checks.values()]
    assert "models/model.pt downloaded, hash checked" in checks["files"].detail
    assert "shipped models/model.ts" in checks["torchscript"].detail and not checks["torchscript"].applicable
    with pytest.raises(ExportError, match="overwrite"):
        export_bundle(source, trained, tmp_path / "dist2")  # nothing already published is replaced silently

    root = tmp_path / "unzipped"
    with zipfile.ZipFile(summary["archive"]) as archive:
        archive.extractall(root)
    assert sorted(p.name for p in root.iterdir()) == ["swin_unetr_cls"]
    unzipped = root / "swin_unetr_cls"
    embedded = {"inference.json": "", "metadata.json": ""}
    torch.jit.load(str(unzipped / "models" / "model.ts"), _extra_files=embedded)
    assert json.loads(embedded["metadata.json"])["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32] * 3
    assert set(json.loads(embedded["inference.json"])["operating_point"]) == {"temperature", "threshold"}

    run_bundle(unzipped, ["inference.json"], "--input", str(small_brats), "--output_dir", str(tmp_path / "preds"),
               "--num_workers", "0", "--amp", "False")  # fmt: skip
    rows = read_csv(tmp_path / "preds" / "predictions.csv")
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in small_datalist["training"])
    run_bundle(unzipped, ["inference.json"], "--input", str(small_brats), "--output_file", str(tmp_path / "onnx.csv"),
               "--num_workers", "0", "--use_onnx", "True")  # fmt: skip
    eager = {r["id"]: float(r["logit"]) for r in rows}
    for row in read_csv(tmp_path / "onnx.csv"):  # ONNX Runtime serves the exported file with the eager log-odds
        assert abs(float(row["logit"]) - eager[row["id"]]) <= ONNX_ATOL + ONNX_RTOL * abs(eager[row["id"]]), row

    code = LOAD_AND_RUN.format(src=str(REPO / "src"), root=str(root), cases=str(small_brats),
                               output=str(tmp_path / "workflow_preds"))  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=unzipped, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, failure_text(result)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["after_load"] == loaded["before"]  # loading leaves nothing behind
    assert loaded["difference"] < 1e-5 and loaded["missing"] == []
    assert len(read_csv(tmp_path / "workflow_preds" / "predictions.csv")) == len(rows)
