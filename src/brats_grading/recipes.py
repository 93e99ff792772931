"""The CPU recipes: overrides of each bundle's configs that learn the synthetic task on two cores.

The bundles' own defaults are meant for real BraTS data on a GPU (128^3, 60 epochs). These smaller
recipes are what the demo and the cross-validation runs use; docs/performance.md and
docs/cross_validation.md record what they measured and why each value was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MALLOC_SETTINGS", "RECIPES", "Recipe", "cli_args"]


@dataclass(frozen=True)
class Recipe:
    """One bundle's CPU recipe.

    Args:
        spatial_size: network input edge (voxels per axis).
        network: overrides that change the network, needed by training, evaluation and inference alike.
        train: training-only overrides.
        epochs: training epochs; early stopping may not end a run before them.
        deferred_reweighting: the bundle's loss re-weights classes from a start epoch (LDAM + DRW).
    """

    spatial_size: int
    network: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    epochs: int = 12
    deferred_reweighting: bool = False

    def schedule(self, epochs: int | None = None) -> dict:
        """Epoch overrides: the run lasts ``epochs``; deferred re-weighting starts half-way."""
        epochs = epochs or self.epochs
        schedule = {"epochs": epochs, "early_stop_min_epochs": epochs}
        if self.deferred_reweighting:
            schedule["drw_start_epoch"] = max(2, epochs // 2)
        return schedule

    def shared(self) -> dict:
        """Overrides every config of the bundle takes (input size and network)."""
        edge = self.spatial_size
        return {"spatial_size": [edge, edge, edge], **self.network}

    def training(self, epochs: int | None = None) -> dict:
        """Every training override: input size, network, optimisation and schedule."""
        return {**self.shared(), **self.train, **self.schedule(epochs)}


RECIPES: dict[str, Recipe] = {
    # strided layout: 3x fewer FLOPs than MedicalNet's dilated one at the same input size; no EMA in a
    # 12-epoch run (its average would lag the raw weights); a higher learning rate than the real-data 2e-4
    "resnet50_3d_ldam": Recipe(
        spatial_size=48,
        network={"layout": "strided"},
        train={"batch_size": 8, "learning_rate": 0.001, "accumulation_steps": 1, "warmup_epochs": 1, "use_ema": False},
        deferred_reweighting=True,
    ),
    # the grade shows in a small bright finding (an enhancing rim): pooled from the deepest stage, averaged and
    # layer-normalised, it was lost and the encoder stayed at chance on 96 training cases; the maximum of the
    # un-normalised patch embedding and first Swin stage (v2: with a residual convolution before it) keeps it
    "swin_unetr_cls": Recipe(
        spatial_size=32,
        network={"feature_size": 24, "use_v2": True, "pooled_stages": [0, 1], "pooling": "max", "normalize": False},
        train={
            "batch_size": 4,
            "accumulation_steps": 1,
            "learning_rate": 0.0001,
            "encoder_learning_rate": 0.0001,
            "warmup_epochs": 1,
            "use_ema": False,
        },
    ),
}


def cli_args(overrides: dict) -> list[str]:
    """``--key value`` pairs as ``python -m monai.bundle run`` parses them (Python literals, paths as text)."""
    args: list[str] = []
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return args


#: glibc malloc keeps freed memory instead of returning it to the system after every step, which saves
#: the page faults of re-allocating it (small steps: a Swin step at 32^3 took 0.77x the time), and backs
#: the buffers it must mmap (everything above 32 MiB) with transparent huge pages (a Swin 128^3 step:
#: 0.57x the time; docs/performance.md). Launchers pass it in the environment of the bundle commands
#: they start; no dependency is needed.
MALLOC_SETTINGS: dict[str, str] = {
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_TOP_PAD_": str(1 << 30),
    "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
}
