"""The shared pretrained-weight reader (safe, one set of errors) and the one input-channel adaptation rule."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from brats_grading.components.pretrained_weights import (
    adapt_input_channels,
    differs_only_in_input_channels,
    read_state_dict,
)

CODE_RUNS: list[str] = []


def _record_code_run() -> str:
    CODE_RUNS.append("ran")
    return "ran"


class RunsCodeWhenUnpickled:
    """Unpickling an instance calls :func:`_record_code_run`, so a test can see whether pickled code ran."""

    def __reduce__(self):
        return (_record_code_run, ())


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "conv1.weight": torch.randn(4, 1, 3, 3, 3, generator=generator),
        "bn1.running_mean": torch.randn(4, generator=generator),
        "fc.weight": torch.randn(2, 4, generator=generator),
    }


def _assert_same_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(actual) == list(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


# ------------------------------------------------------------------------------------------------ reading


def test_plain_state_dict_is_read_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(_tensors(), path)
    _assert_same_state(read_state_dict(path, "test weights"), _tensors())


def test_state_dict_wrapper_is_unwrapped_and_its_other_entries_ignored(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": _tensors(), "epoch": 3, "arch": "resnet50"}, path)
    _assert_same_state(read_state_dict(str(path), "test weights"), _tensors())


def test_dataparallel_module_prefixes_are_stripped_repeatedly(tmp_path: Path) -> None:
    tensors = _tensors()
    path = tmp_path / "dataparallel.pth"
    saved = {
        "module.conv1.weight": tensors["conv1.weight"],
        "module.module.bn1.running_mean": tensors["bn1.running_mean"],
        "fc.weight": tensors["fc.weight"],
    }
    torch.save({"state_dict": saved}, path)
    _assert_same_state(read_state_dict(path, "test weights"), tensors)


def test_keys_that_coincide_once_module_is_stripped_raise_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "ambiguous.pt"
    torch.save({"module.conv1.weight": torch.zeros(1), "conv1.weight": torch.ones(1)}, path)
    with pytest.raises(ValueError, match=r"'module\.conv1\.weight' and 'conv1\.weight'") as info:
        read_state_dict(path, "test weights")
    assert str(path) in str(info.value)


def test_missing_file_raises_file_not_found_naming_the_path_and_how_to_train_without(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "weights.pth"
    with pytest.raises(FileNotFoundError) as info:
        read_state_dict(path, "Test weights")
    message = str(info.value)
    assert message.startswith("Test weights")
    assert str(path) in message
    assert "Nothing is downloaded" in message and "train from scratch" in message


@pytest.mark.parametrize(
    "content",
    [
        [torch.zeros(2)],
        torch.zeros(3),
        {},
        {"weight": torch.zeros(2), "epoch": 3},
        {"state_dict": {"weight": 1.0}},
        {0: torch.zeros(2)},
    ],
    ids=["list", "tensor", "empty", "non-tensor-value", "wrapped-non-tensor", "non-string-key"],
)
def test_file_that_is_not_a_state_dict_raises_value_error_naming_the_file(tmp_path: Path, content) -> None:
    path = tmp_path / "not_a_state_dict.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="is not a state dict") as info:
        read_state_dict(path, "test weights")
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [{"x": RunsCodeWhenUnpickled()}, {"x": functools.partial(print, "unpickled")}],
    ids=["class-instance", "functools-partial"],
)
def test_file_needing_pickled_code_is_refused_with_value_error_naming_the_file(tmp_path: Path, content) -> None:
    path = tmp_path / "pickled_code.pt"
    torch.save(content, path)
    CODE_RUNS.clear()
    with pytest.raises(ValueError) as info:
        read_state_dict(path, "test weights")
    message = str(info.value)
    assert str(path) in message
    assert "refused" in message and "would run pickled code" in message
    assert "Re-save only the state dict" in message
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert CODE_RUNS == []


def test_the_pickled_code_fixture_really_runs_code_when_loaded_unsafely(tmp_path: Path) -> None:
    path = tmp_path / "pickled_code.pt"
    torch.save({"x": RunsCodeWhenUnpickled()}, path)
    CODE_RUNS.clear()
    assert torch.load(path, weights_only=False) == {"x": "ran"}
    assert CODE_RUNS == ["ran"]


def test_truncated_file_raises_value_error_naming_the_file(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(_tensors(), whole)
    path = tmp_path / "truncated.pt"
    path.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(ValueError, match="is not a readable PyTorch checkpoint") as info:
        read_state_dict(path, "test weights")
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------- adapting


@pytest.mark.parametrize(("source_channels", "in_channels"), [(2, 4), (1, 4), (3, 1), (4, 4)])
def test_adapted_kernel_preserves_response_to_identical_channels(source_channels: int, in_channels: int) -> None:
    generator = torch.Generator().manual_seed(source_channels * 10 + in_channels)
    weight = torch.randn(8, source_channels, 3, 3, 3, generator=generator, dtype=torch.float64)
    image = torch.randn(1, 1, 9, 9, 9, generator=generator, dtype=torch.float64)

    adapted = adapt_input_channels(weight, in_channels)

    assert adapted.shape == (8, in_channels, 3, 3, 3)
    pretrained_response = F.conv3d(image.repeat(1, source_channels, 1, 1, 1), weight)
    adapted_response = F.conv3d(image.repeat(1, in_channels, 1, 1, 1), adapted)
    torch.testing.assert_close(adapted_response, pretrained_response, rtol=1e-12, atol=1e-12)


def test_adapted_kernel_gives_each_channel_the_sum_over_source_channels_divided_by_in_channels() -> None:
    weight = torch.arange(2 * 3 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2, 2)
    adapted = adapt_input_channels(weight, 4)
    expected_channel = (weight[:, 0] + weight[:, 1] + weight[:, 2]) / 4
    for channel in range(4):
        assert torch.equal(adapted[:, channel], expected_channel)


def test_one_channel_kernel_is_repeated_and_scaled_by_one_over_in_channels_exactly() -> None:
    weight = torch.randn(8, 1, 7, 7, 7, generator=torch.Generator().manual_seed(3))
    adapted = adapt_input_channels(weight, 4)
    assert torch.equal(adapted, weight.repeat(1, 4, 1, 1, 1) / 4)
    assert torch.equal(adapted, weight.mean(dim=1, keepdim=True).repeat(1, 4, 1, 1, 1) / 4)


def test_adapted_kernel_is_a_new_contiguous_tensor_of_the_same_dtype_for_2d_kernels_too() -> None:
    weight = torch.ones(6, 1, 4, 4, dtype=torch.float64)
    adapted = adapt_input_channels(weight, 3)
    assert adapted.shape == (6, 3, 4, 4) and adapted.dtype == torch.float64 and adapted.is_contiguous()
    adapted.zero_()
    assert torch.all(weight == 1)


def test_adapting_something_that_is_not_a_kernel_or_to_no_channels_raises() -> None:
    with pytest.raises(ValueError, match=r"\(out, c, \*kernel\).*\(8, 2\)"):
        adapt_input_channels(torch.zeros(8, 2), 4)
    with pytest.raises(ValueError, match="in_channels must be positive"):
        adapt_input_channels(torch.zeros(8, 1, 3, 3, 3), 0)


def test_only_a_difference_in_input_channels_counts_as_adaptable() -> None:
    assert differs_only_in_input_channels((64, 1, 7, 7, 7), (64, 4, 7, 7, 7))
    assert differs_only_in_input_channels(torch.Size([48, 1, 2, 2, 2]), [48, 4, 2, 2, 2])
    assert not differs_only_in_input_channels((64, 1, 7, 7, 7), (64, 1, 7, 7, 7))  # nothing to adapt
    assert not differs_only_in_input_channels((64, 1, 7, 7, 7), (32, 4, 7, 7, 7))  # output channels
    assert not differs_only_in_input_channels((64, 1, 7, 7, 7), (64, 4, 3, 3, 3))  # kernel size
    assert not differs_only_in_input_channels((64, 1, 7, 7), (64, 4, 7, 7, 7))  # dimensionality
    assert not differs_only_in_input_channels((64, 1), (64, 4))  # a linear layer, not a kernel
