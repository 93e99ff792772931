"""multi_gpu_train.json under torchrun: two real processes with DDP over gloo on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import copy_bundle, failure_text

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("bundle_name", "extra"), [("resnet50_3d_ldam", []), ("swin_unetr_cls", ["--feature_size", "12"])]
)
def test_two_process_training_saves_once_and_agrees(bundle_name, extra, small_brats, tmp_path):
    bundle = copy_bundle(bundle_name, tmp_path)
    output = tmp_path / "runs"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run",
        "--config_file", "['configs/train.json','configs/multi_gpu_train.json']",
        "--logging_file", "configs/logging.conf",
        "--dataset_dir", str(small_brats), "--output_dir", str(output),
        "--spatial_size", "[32,32,32]", "--epochs", "1", "--batch_size", "2", "--num_workers", "0",
        "--use_weighted_sampler", "True", "--publish_model", "False", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, failure_text(result)
    runs = list((output / "fold_0").glob("run_*"))
    assert len(runs) == 1, runs  # one folder, named by rank 0 for both ranks
    run = runs[0]
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert last["trainer"]["iteration"] == last["trainer"]["epoch_length"]  # one epoch, no step lost or doubled
    assert not any(k.startswith("module.") for k in last["network"])  # DDP unwrapped when saved
    metrics = json.loads((run / "metrics" / "metrics.json").read_text())
    n_val = sum(1 for r in json.loads((small_brats / "datalist.json").read_text())["training"] if r["fold"] == 0)
    assert metrics["final"]["num_cases"] == n_val  # both ranks' predictions gathered
    assert len(list((run / "logs").glob("train_*.log"))) == 1
