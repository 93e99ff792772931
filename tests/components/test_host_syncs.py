"""Per-iteration handlers never read a device tensor on the host outside the log interval.

On a GPU every ``.item()``, ``float(t)``, ``.tolist()`` or ``.cpu()`` makes the host wait for the device,
so a handler that does it every iteration stalls the pipeline. The engines here produce tensors of a
subclass that records every such read; the handlers may read at the log interval and at the end of an
epoch, nowhere else. The bundle configs wire the log interval into the loss logging.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from brats_grading.components.bundle_env import bundle_importable
from brats_grading.components.handlers import (
    EpochMetricsHandler,
    NonFiniteLossError,
    NonFiniteLossHandler,
    PredictionSaver,
)
from brats_grading.components.run_report import RunReport

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
HOST_READS = {"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy", "cpu"}


class HostReads(torch.Tensor):
    """A tensor that records, in ``HostReads.log``, every method that copies its values to the host."""

    log: list[tuple[int, str]] = []
    iteration = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            cls.log.append((cls.iteration, name))
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.fixture
def host_reads():
    HostReads.log, HostReads.iteration = [], 0
    return HostReads


def _engine(outputs: list[dict], ids: list[list[str]]) -> Engine:
    """Replays ``outputs`` (one dict per iteration); the batch holds the case ids, as MONAI's engines keep them."""

    def step(engine: Engine, index: int) -> dict:
        HostReads.iteration = engine.state.iteration
        engine.state.batch = {"id": ids[index]}
        return outputs[index]

    return Engine(step)


def _batches(n: int, batch: int = 2, loss: float = 0.5) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "pred": torch.randn(batch, 2, generator=generator).as_subclass(HostReads),
            "label": torch.tensor([i % 2 for i in range(batch)]).as_subclass(HostReads),
            "loss": torch.tensor(loss).as_subclass(HostReads),
        }
        for _ in range(n)
    ]


def _reads_at(log: list[tuple[int, str]]) -> set[int]:
    return {iteration for iteration, _ in log}


def test_non_finite_check_reads_the_loss_only_at_the_interval_and_the_epoch_end(host_reads, tmp_path):
    outputs = _batches(10)
    engine = _engine(outputs, [["a", "b"]] * 10)
    NonFiniteLossHandler(str(tmp_path / "last.pt"), check_every=4).attach(engine)
    engine.run(list(range(10)), max_epochs=1)
    assert _reads_at(host_reads.log) == {4, 8, 10}


def test_a_nan_between_checks_is_caught_at_the_next_check_naming_the_window(host_reads, tmp_path):
    outputs = _batches(10)
    outputs[5]["loss"] = torch.tensor(float("nan")).as_subclass(HostReads)  # iteration 6
    engine = _engine(outputs, [["a", "b"]] * 10)
    NonFiniteLossHandler(str(tmp_path / "last.pt"), check_every=4).attach(engine)
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 1, iterations 5-8 of 10"):
        engine.run(list(range(10)), max_epochs=1)


def test_a_nan_in_the_last_iterations_is_caught_before_the_epoch_ends(host_reads, tmp_path):
    outputs = _batches(10)
    outputs[9]["loss"] = torch.tensor(float("inf")).as_subclass(HostReads)  # iteration 10, after the last check
    engine = _engine(outputs, [["a", "b"]] * 10)
    saved = []
    NonFiniteLossHandler(str(tmp_path / "last.pt"), check_every=4).attach(engine)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: saved.append(e.state.epoch))  # a checkpoint saver
    with pytest.raises(NonFiniteLossError, match=r"inf at epoch 1, iterations 9-10 of 10"):
        engine.run(list(range(10)), max_epochs=1)
    assert saved == []


def test_epoch_metrics_read_the_outputs_only_when_the_epoch_ends(host_reads, tmp_path):
    outputs = _batches(5)
    ids = [[f"c{2 * i}", f"c{2 * i + 1}"] for i in range(5)]
    engine = _engine(outputs, ids)
    report = RunReport(tmp_path)
    EpochMetricsHandler(report, "val").attach(engine)
    engine.run(list(range(5)), max_epochs=1)
    assert host_reads.log and _reads_at(host_reads.log) == {5}  # all at the last iteration's epoch end
    assert engine.state.metrics["val_num_cases"] == 10
    assert report.latest["val"]["ids"] == [c for pair in ids for c in pair]


def test_prediction_saver_reads_the_outputs_only_when_inference_completes(host_reads, tmp_path):
    outputs = _batches(3)
    engine = _engine(outputs, [["a", "b"], ["c", "d"], ["e", "f"]])
    PredictionSaver(str(tmp_path / "predictions.csv")).attach(engine)
    engine.run(list(range(3)), max_epochs=1)
    assert _reads_at(host_reads.log) == {3}
    with open(tmp_path / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == list("abcdef")
    expected = torch.cat([o["pred"] for o in outputs]).as_subclass(torch.Tensor)
    assert [float(r["logit"]) for r in rows] == pytest.approx((expected[:, 1] - expected[:, 0]).tolist(), abs=1e-6)


@pytest.mark.parametrize("bundle", ["resnet50_3d_ldam", "swin_unetr_cls"])
def test_bundle_logs_the_training_loss_every_log_interval(bundle, tmp_path):
    parser = ConfigParser()
    parser.read_config(BUNDLES / bundle / "configs" / "train.json")
    parser["log_interval"] = 3
    parser["run_dir"] = str(tmp_path)
    parser["checkpoint_dir"] = str(tmp_path)
    handlers = parser["train"]["handlers"]
    index = {h["_target_"]: i for i, h in enumerate(handlers) if isinstance(h, dict)}
    with bundle_importable(BUNDLES / bundle):
        stats = parser.get_parsed_content(f"train#handlers#{index['StatsHandler']}")
        board = parser.get_parsed_content(f"train#handlers#{index['TensorBoardStatsHandler']}")
        guard = parser.get_parsed_content(f"train#handlers#{index['scripts.common.handlers.NonFiniteLossHandler']}")
    printed, written = [], []
    stats.iteration_print_logger = lambda engine: printed.append(engine.state.iteration)
    board.iteration_event_writer = lambda engine, writer: written.append(engine.state.iteration)
    engine = Engine(lambda e, b: {"loss": torch.tensor(0.5)})
    for handler in (stats, board, guard):
        handler.attach(engine)
    engine.run(list(range(10)), max_epochs=1)
    assert printed == [3, 6, 9] and written == [3, 6, 9]
    assert guard.check_every == 3
    assert json.loads((BUNDLES / bundle / "configs" / "train.json").read_text())["log_interval"] == 10
