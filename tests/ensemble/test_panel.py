"""MemberPanel: calibrated member probabilities, fold models averaged, flip test-time augmentation."""

from __future__ import annotations

import pytest
import torch
from helpers import import_bundle_scripts

members = import_bundle_scripts("ensemble", "members")
panel = import_bundle_scripts("ensemble", "panel")


class SideNet(torch.nn.Module):
    """Logits that depend on which half of the volume is brighter, so a flip changes them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[2] // 2
        d = x[:, :, :half].mean(dim=(1, 2, 3, 4)) - x[:, :, half:].mean(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(d), 3 * d], dim=1)


def _member(name: str, temperatures=(1.0,)) -> members.Member:
    return members.Member(
        name=name,
        models=[SideNet() for _ in temperatures],
        temperatures=list(temperatures),
        thresholds=[0.5] * len(temperatures),
        modalities=["flair"],
        spatial_size=[8, 8, 8],
        source="test",
    )


def _inputs(names, batch: int = 3) -> dict:
    torch.manual_seed(0)
    return {n: torch.rand(batch, 1, 8, 8, 8) for n in names}


def test_identity_tta_equals_no_tta():
    member = _member("a")
    x = _inputs(["a"])
    plain = panel.MemberPanel([member])(x)
    for flips in ([[]], [[], []]):
        torch.testing.assert_close(panel.MemberPanel([member], tta_flips=flips)(x), plain, rtol=0, atol=0)
    flipped = panel.MemberPanel([member], tta_flips=[[0]])(x)
    assert not torch.allclose(flipped, plain)  # the test network does see the flip
    both = panel.MemberPanel([member], tta_flips=[[], [0]])(x)
    torch.testing.assert_close(both, (plain + flipped) / 2)


def test_member_probability_is_the_calibrated_mean_over_its_models():
    member = _member("a", temperatures=(1.0, 2.0))
    x = _inputs(["a"])
    logits = SideNet()(x["a"])
    log_odds = logits[:, 1] - logits[:, 0]
    expected = (torch.sigmoid(log_odds) + torch.sigmoid(log_odds / 2)) / 2
    out = panel.MemberPanel([member, _member("b")])(_inputs(["a", "b"]))
    assert out.shape == (3, 2)
    torch.testing.assert_close(out[:, 0], expected)
    assert member.threshold == 0.5


def test_one_tensor_for_every_member_is_refused_with_the_member_names():
    """The zoo's shape check feeds one (B, C, D, H, W) tensor; the panel says what it takes instead."""
    with pytest.raises(TypeError, match=r"dict of per-member inputs .* \['a', 'b'\], got \(1, 4, 8, 8, 8\)"):
        panel.MemberPanel([_member("a"), _member("b")])(torch.rand(1, 4, 8, 8, 8))


def test_flip_axes_are_checked():
    with pytest.raises(ValueError, match="spatial axes are 0, 1 and 2"):
        panel.MemberPanel([_member("a")], tta_flips=[[3]])


def test_member_specs_are_checked_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"members\[0\]: unknown key\(s\) \['weights'\]"):
        members.load_member({"name": "a", "bundle": "x", "weights": 1})
    with pytest.raises(ValueError, match="either 'bundle'"):
        members.load_member({"name": "a"})
    with pytest.raises(FileNotFoundError, match="configs/inference.json does not exist"):
        members.load_member({"name": "a", "bundle": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="no cv_summary.json"):
        members.load_member({"name": "a", "cv_dir": str(tmp_path)})
