"""What one benchmark child process measures; run as ``python -m brats_grading.benchmark.child TASK JSON``.

Each task prints one line ``RESULT <json>``. A fresh process per measurement keeps allocator state,
oneDNN caches and peak memory of one configuration out of the next.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from .bundle_runs import bare_run, bundle_run
from .measuring import MARK, bundle_scripts, peak_device_mib, peak_rss_mib, synchronize

#: the lower precision each device computes natively: bfloat16 on AVX-512 / AMX CPUs, float16 on GPUs
LOW_PRECISION = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def build_model(model: str, use_checkpoint: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``resnet_medicalnet`` / ``resnet_strided`` (LDAM loss) or ``swin24`` / ``swin48`` / ``swin12`` (cross-entropy;
    ``use_checkpoint``: gradient checkpointing in every Swin block)."""
    if model.startswith("resnet_"):
        bundle_scripts("resnet50_3d_ldam")
        networks = importlib.import_module("resnet50_3d_ldam_scripts.networks")
        losses = importlib.import_module("resnet50_3d_ldam_scripts.losses")
        network = networks.MedicalNetResNet50(in_channels=4, num_classes=2, layout=model.split("_", 1)[1])
        return network, losses.LDAMLoss([60, 168], max_m=0.5, s=30.0)
    bundle_scripts("swin_unetr_cls")
    networks = importlib.import_module("swin_unetr_cls_scripts.networks")
    network = networks.SwinEncoderClassifier(
        in_channels=4, num_classes=2, feature_size=int(model[4:]), use_checkpoint=use_checkpoint
    )
    return network, torch.nn.CrossEntropyLoss()


def _autocast(precision: str, device: torch.device):
    dtype = {"float32": None, **LOW_PRECISION}[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)


def train_step(model: str, size: int, batch: int, precision: str, channels_last: bool, steps: int, warmup: int,
               count_flops: bool = False, device: str = "cpu", use_checkpoint: bool = False) -> dict:  # fmt: skip
    """Time training steps (forward under autocast, float32 loss, backward, clip, Adam) on random tensors.

    float16 steps use a ``GradScaler``, as the bundles' CUDA AMP does. ``count_flops`` runs one step under
    ``torch.utils.flop_counter`` instead of timing (FLOPs do not depend on precision or memory layout, so one
    count serves every configuration of a model and size).
    """
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    device = torch.device(device)
    network, loss_fn = build_model(model, use_checkpoint)
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


def _onnx_runner(network: torch.nn.Module, x: torch.Tensor):
    """The network exported as the bundles export it (TorchScript-based exporter, dynamic batch), run by
    ONNX Runtime in float32 (it does not autocast)."""
    import tempfile

    from ..components.onnx_network import OnnxNetwork

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(network.float(), (x[:1].float(),), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)  # fmt: skip
    return OnnxNetwork(path, x.device)


def inference(model: str, size: int, batch: int, precision: str, mode: str, batches: int, warmup: int,
              device: str = "cpu", channels_last: bool = False) -> dict:  # fmt: skip
    """Cases per second of a forward pass, eager (lower precision by autocast), traced and frozen TorchScript
    (lower-precision weights and input: TorchScript does not autocast on CPU) or ONNX Runtime; returns the HGG log-odds of the
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
        if mode == "onnx":
            runner = _onnx_runner(network, x)
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
