"""What one benchmark child process measures; run as ``python -m brats_grading.benchmark.child TASK JSON``.

Each task prints one line ``RESULT <json>``. A fresh process per measurement keeps allocator state,
oneDNN caches and peak memory of one configuration out of the next.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
BUNDLES = REPO / "bundles"
MARK = "RESULT "


#: the lower precision each device computes natively: bfloat16 on AVX-512 / AMX CPUs, float16 on GPUs
LOW_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def peak_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024


def peak_device_mib(device: torch.device) -> float | None:
    """Peak memory allocated on a GPU (None on the CPU, where the peak RSS says it)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it (CPU work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bundle_scripts(bundle: str):
    """Import ``bundles/<bundle>/scripts`` by path under a unique name (the bundles all call it ``scripts``)."""
    name = f"{bundle}_scripts"
    if name not in sys.modules:
        folder = BUNDLES / bundle / "scripts"
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return importlib.import_module(name)


def build_model(model: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``resnet_medicalnet`` / ``resnet_strided`` (LDAM loss) or ``swin24`` / ``swin48`` / ``swin12`` (cross-entropy)."""
    if model.startswith("resnet_"):
        bundle_scripts("resnet50_3d_ldam")
        networks = importlib.import_module("resnet50_3d_ldam_scripts.networks")
        losses = importlib.import_module("resnet50_3d_ldam_scripts.losses")
        network = networks.MedicalNetResNet50(in_channels=4, num_classes=2, layout=model.split("_", 1)[1])
        return network, losses.LDAMLoss([60, 168], max_m=0.5, s=30.0)
    bundle_scripts("swin_unetr_cls")
    networks = importlib.import_module("swin_unetr_cls_scripts.networks")
    network = networks.SwinEncoderClassifier(in_channels=4, num_classes=2, feature_size=int(model[4:]))
    return network, torch.nn.CrossEntropyLoss()


def _autocast(precision: str, device: torch.device):
    dtype = {"float32": None, **LOW_PRECISION}[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)


def train_step(model: str, size: int, batch: int, precision: str, channels_last: bool, steps: int, warmup: int,
               count_flops: bool = False, device: str = "cpu") -> dict:  # fmt: skip
    """Time training steps (forward under autocast, float32 loss, backward, clip, Adam) on random tensors.

    float16 steps use a ``GradScaler``, as the bundles' CUDA AMP does. ``count_flops`` runs one step under
    ``torch.utils.flop_counter`` instead of timing (FLOPs do not depend on precision or memory layout, so one
    count serves every configuration of a model and size).
    """
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    device = torch.device(device)
    network, loss_fn = build_model(model)
    bundle = "resnet50_3d_ldam" if model.startswith("resnet_") else "swin_unetr_cls"
    precision_module = importlib.import_module(f"{bundle}_scripts.common.precision")
    network = precision_module.guard_tiny_map_convolutions(network.to(device))  # as the bundles train it
    x = torch.randn(batch, 4, size, size, size).to(device)
    y = torch.tensor([i % 2 for i in range(batch)]).to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "float16")

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(precision, device):
            logits = network(x)
        loss = loss_fn(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), 0.5)
        scaler.step(optimizer)
        scaler.update()

    if count_flops:
        with FlopCounterMode(display=False) as counter:
            step()
        return {"flops": counter.get_total_flops()}
    times = []
    for i in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"times": times, "peak_rss_mib": peak_rss_mib(), "peak_device_mib": peak_device_mib(device)}


def matmul_peak(precision: str, n: int = 2048, repeats: int = 6, device: str = "cpu") -> dict:
    """FLOP/s of a large square matmul: the machine's reachable peak in that precision."""
    device = torch.device(device)
    dtype = {"float32": torch.float32, **LOW_PRECISION}[precision]
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"times": times, "flops": 2 * n**3}


def _bundle_workflow(bundle: str, configs: list[str], overrides: dict):
    from monai.bundle import ConfigWorkflow

    root = BUNDLES / bundle
    os.chdir(root)
    sys.path.insert(0, str(root))
    workflow = ConfigWorkflow(config_file=[f"configs/{c}" for c in configs], workflow_type="train", **overrides)
    workflow.initialize()
    return workflow


def _timed(engine, first_epoch: int, device: torch.device) -> dict:
    """Per epoch >= ``first_epoch``: loop seconds (first batch wait to last iteration), seconds to the end of the
    first iteration (the epoch's start-up: worker processes, first batch) and data-wait seconds.

    On a GPU the last iteration of an epoch waits for the device, so the loop time holds all its work.
    """
    from ignite.engine import Events

    record = {"loop": [], "first": [], "wait": [], "iterations": []}
    marks: dict = {}

    def started(e):
        marks.update(start=time.perf_counter(), wait=0.0)

    def get_started(e):
        marks["get"] = time.perf_counter()

    def get_done(e):
        marks["wait"] += time.perf_counter() - marks["get"]

    def epoch_done(e):
        if e.state.epoch >= first_epoch:
            record["loop"].append(marks["end"] - marks["start"])
            record["first"].append(marks["first"] - marks["start"])
            record["wait"].append(marks["wait"])
            record["iterations"].append(e.state.epoch_length)

    def iteration_done(e):
        if e.state.iteration % e.state.epoch_length == 0:
            synchronize(device)
        marks["end"] = time.perf_counter()
        if e.state.iteration % e.state.epoch_length == 1 or e.state.epoch_length == 1:
            marks["first"] = marks["end"]

    engine.add_event_handler(Events.EPOCH_STARTED, started)
    engine.add_event_handler(Events.GET_BATCH_STARTED, get_started)
    engine.add_event_handler(Events.GET_BATCH_COMPLETED, get_done)
    engine.add_event_handler(Events.ITERATION_COMPLETED, iteration_done)
    engine.add_event_handler(Events.EPOCH_COMPLETED, epoch_done)
    return record


def bundle_run(bundle: str, overrides: dict) -> dict:
    """A real ``train.json`` run: per-iteration seconds of training and of validation after the first epoch."""
    workflow = _bundle_workflow(bundle, ["train.json"], overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    device = torch.device(workflow.parser.get_parsed_content("device"))
    train = _timed(trainer, first_epoch=2, device=device)
    validate = _timed(evaluator, first_epoch=2, device=device)
    workflow.run()
    # the timings are all a benchmark run keeps: its checkpoints (~0.5 GB each) would fill the disk
    shutil.rmtree(workflow.parser.get_parsed_content("run_dir"), ignore_errors=True)
    return {
        "train": train,
        "validate": validate,
        "peak_rss_mib": peak_rss_mib(),
        "torch_threads": torch.get_num_threads(),
    }


def bare_run(bundle: str, overrides: dict, epochs: int, in_memory: bool = False) -> dict:
    """The same work by hand: the bundle's network, loss, optimiser, autocast, accumulation and clipping, without
    Ignite or handlers. The batches come from the bundle's own data loaders (same cache, augmentation and
    workers), or, with ``in_memory``, are drawn once and replayed, which leaves out the data pipeline."""
    workflow = _bundle_workflow(bundle, ["train.json"], overrides)
    parser = workflow.parser
    network, loss_fn, optimizer = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
    inferer = parser.get_parsed_content("train#inferer")
    accumulation, clip = parser.get_parsed_content("accumulation_steps"), parser.get_parsed_content("grad_clip")
    device = torch.device(parser.get_parsed_content("device"))
    train_loader = parser.get_parsed_content("train#dataloader")
    val_loader = parser.get_parsed_content("validate#dataloader")
    if in_memory:
        train_loader, val_loader = list(train_loader), list(val_loader)
    train_times, val_times, train_counts, val_counts, train_first, val_first = [], [], [], [], [], []
    for _ in range(epochs):
        network.train()
        start, count = time.perf_counter(), 0
        for i, batch in enumerate(train_loader):
            image, label = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
            loss = loss_fn(inferer(image, network), label) / accumulation
            loss.backward()
            if (i + 1) % accumulation == 0 or i + 1 == len(train_loader):
                if clip > 0:
                    torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
                optimizer.step()
                optimizer.zero_grad()
            count += 1
            if count == 1:
                train_first.append(time.perf_counter() - start)
        synchronize(device)
        train_times.append(time.perf_counter() - start)
        train_counts.append(count)
        network.eval()
        start, count = time.perf_counter(), 0
        with torch.no_grad():
            for batch in val_loader:
                torch.softmax(inferer(batch["image"].to(device, non_blocking=True), network).float(), dim=1)
                count += 1
                if count == 1:
                    val_first.append(time.perf_counter() - start)
        synchronize(device)
        val_times.append(time.perf_counter() - start)
        val_counts.append(count)
    return {
        "train": {"loop": train_times[1:], "first": train_first[1:], "iterations": train_counts[1:]},
        "validate": {"loop": val_times[1:], "first": val_first[1:], "iterations": val_counts[1:]},
        "peak_rss_mib": peak_rss_mib(),
    }


def preprocess(files: list[str], size: int, repeats: int) -> dict:
    """Seconds of each preprocessing transform on one case, one thread."""
    torch.set_num_threads(1)
    from monai.transforms import Compose

    from brats_grading.components.preprocessing import preprocessing_transforms

    transforms = preprocessing_transforms(size)
    names = [type(t).__name__ for t in transforms]
    runs = []
    for _ in range(repeats):
        data = {"id": "case", "image": list(files)}
        seconds = []
        for transform in transforms:
            start = time.perf_counter()
            data = Compose([transform])(data)
            seconds.append(time.perf_counter() - start)
        runs.append(seconds)
    return {"names": names, "runs": runs}


def inference(model: str, size: int, batch: int, precision: str, mode: str, batches: int, warmup: int,
              device: str = "cpu", channels_last: bool = False) -> dict:  # fmt: skip
    """Cases per second of a forward pass, eager (lower precision by autocast) or traced and frozen TorchScript
    (lower-precision weights and input: TorchScript does not autocast on CPU); returns the HGG log-odds of the
    last batch.

    Log-odds, not probabilities: a network with random weights saturates its softmax, so probabilities would
    hide any difference."""
    torch.manual_seed(0)
    device = torch.device(device)
    network, _ = build_model(model)
    network = network.to(device).eval()
    x = torch.randn(batch, 4, size, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad(), _autocast(precision if mode == "eager" else "float32", device):
        runner = network
        if mode == "torchscript":
            if precision in LOW_PRECISION:
                network, x = network.to(LOW_PRECISION[precision]), x.to(LOW_PRECISION[precision])
            runner = torch.jit.freeze(torch.jit.trace(network, x[:1]))
        times = []
        for i in range(warmup + batches):
            synchronize(device)
            start = time.perf_counter()
            out = runner(x)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    logits = out.float().cpu()
    return {"times": times, "batch": batch, "log_odds": (logits[:, 1] - logits[:, 0]).tolist()}


TASKS = {
    "train_step": train_step,
    "matmul_peak": matmul_peak,
    "bundle_run": bundle_run,
    "bare_run": bare_run,
    "preprocess": preprocess,
    "inference": inference,
}

if __name__ == "__main__":
    task, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(MARK + json.dumps(TASKS[task](**arguments)), flush=True)
