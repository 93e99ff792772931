"""What the benchmark measures at which sizes: ``QUICK`` takes about four minutes on two cores (it checks
the machinery), ``FULL`` is the run recorded in docs/performance.md."""

from __future__ import annotations

from dataclasses import dataclass

#: BraTS 2018 training cases: what a full cache would hold
BRATS_2018_CASES = 285


@dataclass(frozen=True)
class Settings:
    repeats: int
    compute_models: tuple[str, ...]
    compute_sizes: tuple[int, ...]
    steps: int
    overhead: dict
    overhead_cases: tuple[int, int]  # (n_hgg, n_lgg)
    overhead_epochs: int
    data_voxel_mm: float
    data_size: int
    inference: dict
    memory_cases: tuple[int, ...]
    memory_overrides: dict
    allocator_model: str
    allocator_size: int
    checkpointing_models: tuple[str, ...]  # Swin models timed with gradient checkpointing off and on
    checkpointing_sizes: tuple[int, ...]
    peak_n: int
    cpu_budget: tuple[tuple[int, int], ...]  # (DataLoader workers, main-process torch threads; 0: one per core)


_SMALL_RUN = {"layout": "strided", "batch_size": 2, "accumulation_steps": 1, "use_ema": False, "num_workers": 0}
QUICK = Settings(
    repeats=1,
    compute_models=("resnet_strided",),
    compute_sizes=(16,),
    steps=1,
    overhead={**_SMALL_RUN, "spatial_size": [16, 16, 16], "val_batch_size": 1},  # >= 2 iterations per epoch
    overhead_cases=(6, 4),
    overhead_epochs=2,
    data_voxel_mm=3.0,
    data_size=32,
    inference={"model": "resnet_strided", "size": 16, "batch": 2, "batches": 2, "warmup": 1},
    memory_cases=(4, 8),
    memory_overrides={**_SMALL_RUN, "spatial_size": [16, 16, 16]},
    allocator_model="swin12",
    allocator_size=32,
    checkpointing_models=("swin12",),
    checkpointing_sizes=(32,),
    peak_n=512,
    cpu_budget=((2, 0), (0, 1)),
)
FULL = Settings(
    repeats=2,
    compute_models=("resnet_medicalnet", "resnet_strided", "swin24", "swin48"),
    compute_sizes=(64, 128),
    steps=2,
    overhead={
        "layout": "medicalnet",
        "batch_size": 2,
        "accumulation_steps": 1,
        "use_ema": False,
        "num_workers": 2,
        "spatial_size": [64, 64, 64],
    },  # fmt: skip
    overhead_cases=(16, 12),
    overhead_epochs=3,
    data_voxel_mm=1.0,
    data_size=128,
    inference={"model": "resnet_medicalnet", "size": 128, "batch": 2, "batches": 3, "warmup": 1},
    memory_cases=(8, 16, 32),
    memory_overrides={**_SMALL_RUN, "spatial_size": [64, 64, 64]},
    allocator_model="swin48",
    allocator_size=128,
    checkpointing_models=("swin24", "swin48"),
    checkpointing_sizes=(64, 128),
    peak_n=2048,
    cpu_budget=((4, 0), (2, 0), (1, 0), (0, 0), (2, 1), (1, 1)),
)


def low_precision(device: str) -> str:
    """The autocast dtype the bundles use on ``device``: float16 on GPUs (with a GradScaler), bfloat16 on CPUs."""
    return "float16" if device.startswith("cuda") else "bfloat16"
