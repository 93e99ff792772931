"""The members as one network: each member's calibrated P(HGG) for a batch, with optional flip test-time augmentation.

``MemberPanel`` returns ``(B, M)`` probabilities, one column per member (a member's fold models are
averaged); how the columns become the ensemble's prediction is :mod:`.combination`'s job, so one
forward pass serves every combination method and the per-member report.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .inputs import member_key
from .members import Member

__all__ = ["MemberPanel", "prepare_member_batch"]


class MemberPanel(torch.nn.Module):
    """Run every member on its own input and return each member's P(HGG).

    Args:
        members: loaded members.
        tta_flips: spatial axes to flip, one entry per pass (``[]`` is the unflipped pass); a member's
            probability is the mean over passes. ``None`` or ``[[]]`` means no test-time augmentation.
    """

    def __init__(self, members: Sequence[Member], tta_flips: Sequence[Sequence[int]] | None = None) -> None:
        super().__init__()
        self.names = [m.name for m in members]
        self.members = list(members)
        # registered so .to(device) and .eval() reach every member's models
        self.models = torch.nn.ModuleList(model for member in members for model in member.models)
        flips = [list(f) for f in (tta_flips or [[]])]
        for flip in flips:
            if any(axis not in (0, 1, 2) for axis in flip):
                raise ValueError(f"tta_flips: spatial axes are 0, 1 and 2, got {flip}")
        self.tta_flips = flips

    def member_probability(self, member: Member, image: torch.Tensor) -> torch.Tensor:
        """Mean over the member's models and flip passes of sigmoid(log-odds / temperature)."""
        probs = []
        for model, temperature in zip(member.models, member.temperatures, strict=True):
            for flip in self.tta_flips:
                x = torch.flip(image, dims=[a + 2 for a in flip]) if flip else image
                logits = model(x).float()
                probs.append(torch.sigmoid((logits[:, 1] - logits[:, 0]) / temperature))
        return torch.stack(probs).mean(dim=0)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, dict):
            shape = tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__
            raise TypeError(
                f"MemberPanel takes a dict of per-member inputs {{name: tensor}} for members {self.names}, got {shape}: "
                "each member reads its own channels and size, so one tensor cannot feed the panel"
            )
        return torch.stack([self.member_probability(m, inputs[m.name]) for m in self.members], dim=1)


def prepare_member_batch(members: Sequence[Member]):
    """A ``prepare_batch`` for MONAI engines: the batch's per-member inputs as a dict, and the labels if any."""
    names = [(m.name, member_key(m)) for m in members]

    def prepare(batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
        inputs = {name: batchdata[key].to(device=device, non_blocking=non_blocking) for name, key in names}
        label = batchdata.get("label")
        return inputs, (label.to(device=device, non_blocking=non_blocking) if torch.is_tensor(label) else None)

    return prepare
