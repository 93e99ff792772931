"""What the model zoo's ``ci/unit_tests`` do with a bundle: build a ``ConfigWorkflow`` with overrides, then
initialize, check its properties, run and finalize it; here inside the bundle's own ``scripts`` package."""

from __future__ import annotations

import warnings
from pathlib import Path

from brats_grading.components.bundle_env import bundle_importable


def check_workflow(bundle: Path, config_files: list[str], workflow_type: str, override: dict):
    """Run one workflow as the zoo's ``check_workflow`` does; return it (after ``finalize``)."""
    from monai.bundle import ConfigWorkflow

    with bundle_importable(bundle), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        workflow = ConfigWorkflow(
            config_file=[str(bundle / "configs" / name) for name in config_files],
            meta_file=str(bundle / "configs" / "metadata.json"),
            logging_file=str(bundle / "configs" / "logging.conf"),
            workflow_type=workflow_type,
            **{"bundle_root": str(bundle), **override},
        )
        workflow.initialize()
        missing = workflow.check_properties()
        if missing:
            raise ValueError(f"{bundle.name} {config_files}: missing properties {missing}")
        workflow.run()
        workflow.finalize()
    return workflow


def train_evaluate_infer(bundle: Path, dataset: Path, output: Path, train: dict, evaluate: dict, infer: dict) -> list:
    """The zoo's test order: train, train + evaluate (the newest run), inference with that run's model.

    Returns the inference rows (``predictions.csv`` as dicts).
    """
    import csv

    common = {"dataset_dir": str(dataset), "output_dir": str(output)}
    check_workflow(bundle, ["train.json"], "train", {**train, **common})
    evaluation = check_workflow(bundle, ["train.json", "evaluate.json"], "train", {**evaluate, **common})
    checkpoint = evaluation.parser.get_parsed_content("checkpoint")
    assert checkpoint.endswith(("best.pt", "best_ema.pt")), checkpoint
    predictions = output / "predictions.csv"
    overrides = {**infer, "dataset_dir": str(dataset), "output_file": str(predictions), "checkpoint": checkpoint}
    check_workflow(bundle, ["inference.json"], "infer", overrides)
    with open(predictions, newline="") as handle:
        return list(csv.DictReader(handle))
