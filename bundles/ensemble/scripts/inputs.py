"""Feed every member what it expects from one load of each case.

The union of the members' modalities is loaded and oriented once (in the datalist's channel order), by
the ``loading`` transforms of the ensemble's ``inference.json``. Each member then gets ``image_<name>``:
its own channels through the ``network_input`` transforms of its own ``inference.json`` (crop, z-score,
resize), so a member's prediction here equals its prediction in its bundle.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import Compose, MapTransform

from .common.data import CHANNEL_ORDER
from .members import Member

__all__ = ["MemberInputsd", "ensemble_modalities", "member_key", "placeholder"]


def member_key(member: Member) -> str:
    return f"image_{member.name}"


def ensemble_modalities(members: Sequence[Member]) -> list[str]:
    """The modalities any member reads, in the datalist's channel order."""
    wanted = {m for member in members for m in member.modalities}
    unknown = sorted(wanted - set(CHANNEL_ORDER))
    if unknown:
        raise ValueError(f"members read modalities {unknown}; known ones are {list(CHANNEL_ORDER)}")
    return [m for m in CHANNEL_ORDER if m in wanted]


class MemberInputsd(MapTransform):
    """From the loaded ``image`` (channels = ``modalities``) make each member's ``image_<name>``; drop ``image``."""

    def __init__(self, members: Sequence[Member], modalities: Sequence[str], image_key: str = "image") -> None:
        super().__init__(keys=image_key)
        self.image_key = image_key
        self.pipelines: dict[str, tuple[list[int], Compose]] = {}
        for member in members:
            if not member.input_transforms:
                raise ValueError(f"member '{member.name}' has no input transforms (its config's network_input)")
            channels = [list(modalities).index(m) for m in member.modalities]
            self.pipelines[member_key(member)] = (channels, Compose(member.input_transforms))

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        image = d.pop(self.image_key)
        for key, (channels, pipeline) in self.pipelines.items():
            d[key] = pipeline({"image": image[channels]})["image"]
        return d


def placeholder(members: Sequence[Member]) -> dict:
    """Zeros shaped like every member's input: what a case that cannot be read stands on in its batch."""
    return {member_key(m): torch.zeros(len(m.modalities), *m.spatial_size) for m in members}
