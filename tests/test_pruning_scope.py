"""Pruning scope, per-layer-type rates, one-shot counts and random masks: pure mask maths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lt_sweeps.masks import (
    apply_masks,
    full_masks,
    global_magnitude_masks,
    grouped_masks,
    keep_count,
    kind_rates,
    layer_kinds,
    layer_sparsity,
    prunable_parameters,
    pruning_groups,
    random_masks,
    times_pruned_at,
)
from lt_sweeps.models import MLP


class TinyConvNet(nn.Module):
    """Conv, BatchNorm and linear layers on 8x8 single-channel images, for tests only."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)
        self.output_layer = "fc2"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        images = inputs.view(-1, 1, 8, 8)
        hidden = torch.relu(self.bn1(self.conv1(images)))
        hidden = torch.max_pool2d(torch.relu(self.bn2(self.conv2(hidden))), 2)
        hidden = torch.relu(self.fc1(hidden.flatten(start_dim=1)))
        return self.fc2(hidden)


def plan(model: nn.Module, scope: str, rate: float = 0.5, conv_rate: float | None = None, prune_bias: bool = False):
    parameters = prunable_parameters(model, prune_bias)
    kinds = layer_kinds(model, list(parameters), model.output_layer)
    rates = kind_rates(kinds, rate, conv_rate, None)
    return parameters, rates, pruning_groups(kinds, rates, scope)


def prune_once(model: nn.Module, scope: str, **options) -> dict[str, torch.Tensor]:
    parameters, rates, groups = plan(model, scope, **options)
    return grouped_masks(parameters, full_masks(parameters), groups, rates, times_pruned=1)


def test_global_keeps_largest_across_layers() -> None:
    weights = {"a.weight": torch.tensor([0.1, 5.0, 0.3]), "b.weight": torch.tensor([4.0, 0.2, 3.0, 0.05])}
    masks = global_magnitude_masks(weights, full_masks(weights), keep=3)

    assert masks["a.weight"].tolist() == [False, True, False]
    assert masks["b.weight"].tolist() == [True, False, True, False]


def test_global_keeps_pruned_weights_pruned() -> None:
    weights = {"a.weight": torch.tensor([9.0, 1.0]), "b.weight": torch.tensor([2.0, 3.0])}
    masks = {"a.weight": torch.tensor([False, True]), "b.weight": torch.tensor([True, True])}
    new_masks = global_magnitude_masks(weights, masks, keep=2)

    assert new_masks["a.weight"].tolist() == [False, False]
    assert new_masks["b.weight"].tolist() == [True, True]


def test_global_layer_sparsities_differ() -> None:
    torch.manual_seed(0)
    model = MLP(64, [300, 100], 10)
    with torch.no_grad():
        model.fc1.weight.mul_(4.0)
    sparsity = layer_sparsity(prune_once(model, "global"))

    assert sparsity["fc1"] < 0.5 < sparsity["fc2"]


def test_global_counts_only_weights() -> None:
    torch.manual_seed(0)
    model = MLP(64, [300, 100], 10)
    masks = prune_once(model, "global", rate=0.5)
    hidden = ["fc1.weight", "fc2.weight"]

    assert set(masks) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert sum(int(masks[name].sum()) for name in hidden) == keep_count(64 * 300 + 300 * 100, 0.5, 1)


def test_global_prune_bias_joins_pool() -> None:
    torch.manual_seed(0)
    model = MLP(64, [300, 100], 10)
    masks = prune_once(model, "global", rate=0.5, prune_bias=True)
    hidden = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    pool = 64 * 300 + 300 + 300 * 100 + 100

    assert sum(int(masks[name].sum()) for name in hidden) == keep_count(pool, 0.5, 1)


def test_global_output_layer_keeps_own_rate() -> None:
    torch.manual_seed(0)
    model = MLP(64, [300, 100], 10)
    with torch.no_grad():
        model.fc3.weight.mul_(100.0)
    masks = prune_once(model, "global", rate=0.5)

    assert int(masks["fc3.weight"].sum()) == keep_count(100 * 10, 0.25, 1)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_batchnorm_and_biases_untouched(scope: str) -> None:
    torch.manual_seed(0)
    model = TinyConvNet()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    parameters, rates, groups = plan(model, scope)
    masks = grouped_masks(parameters, full_masks(parameters), groups, rates, times_pruned=2)
    apply_masks(parameters, masks)
    after = model.state_dict()

    assert not any(name.startswith("bn") for name in masks)
    for name in before:
        if name.startswith("bn") or name.endswith(".bias"):
            assert torch.equal(after[name], before[name]), name


def test_conv_rate_applies_to_conv_layers() -> None:
    torch.manual_seed(0)
    sparsity = layer_sparsity(prune_once(TinyConvNet(), "layerwise", rate=0.4, conv_rate=0.1))

    assert sparsity["conv1"] == pytest.approx(0.1, abs=1 / 72)
    assert sparsity["conv2"] == pytest.approx(0.1, abs=1 / 576)
    assert sparsity["fc1"] == pytest.approx(0.4, abs=1 / 4096)
    assert sparsity["fc2"] == pytest.approx(0.2, abs=1 / 320)


def test_global_conv_rate_makes_own_pool() -> None:
    model = TinyConvNet()
    _, _, groups = plan(model, "global", rate=0.4, conv_rate=0.1)

    assert sorted(groups) == [["conv1.weight", "conv2.weight"], ["fc1.weight"], ["fc2.weight"]]


def test_global_conv_shares_pool_by_default() -> None:
    _, _, groups = plan(TinyConvNet(), "global", rate=0.4)

    assert sorted(groups) == [["conv1.weight", "conv2.weight", "fc1.weight"], ["fc2.weight"]]


def test_layer_kinds() -> None:
    model = TinyConvNet()
    kinds = layer_kinds(model, list(prunable_parameters(model, prune_bias=True)), "fc2")

    assert kinds["conv1.weight"] == kinds["conv1.bias"] == "conv"
    assert kinds["fc1.weight"] == "fc"
    assert kinds["fc2.weight"] == kinds["fc2.bias"] == "output"


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("iterative", [0, 1, 2, 3, 4]), ("oneshot", [0, 4, 4, 4, 4])],
)
def test_times_pruned_per_schedule(schedule: str, expected: list[int]) -> None:
    assert [times_pruned_at(k, schedule, rounds=5) for k in range(5)] == expected


def test_oneshot_equals_final_iterative_sparsity() -> None:
    torch.manual_seed(0)
    model = MLP(64, [300, 100], 10)
    parameters, rates, groups = plan(model, "layerwise", rate=0.35)
    oneshot = grouped_masks(parameters, full_masks(parameters), groups, rates, times_pruned_at(1, "oneshot", 8))

    iterative = full_masks(parameters)
    for k in range(1, 8):
        iterative = grouped_masks(parameters, iterative, groups, rates, times_pruned_at(k, "iterative", 8))

    for name in parameters:
        assert int(oneshot[name].sum()) == int(iterative[name].sum()), name


def test_random_masks_keep_counts() -> None:
    torch.manual_seed(0)
    model = MLP(64, [300, 100], 10)
    masks = prune_once(model, "global")
    shuffled = random_masks(masks, torch.Generator().manual_seed(1))

    for name, mask in masks.items():
        assert int(shuffled[name].sum()) == int(mask.sum()), name
        assert shuffled[name].shape == mask.shape, name
        assert not torch.equal(shuffled[name], mask), name


def test_random_masks_repeat_with_seed() -> None:
    masks = {"w": torch.rand(50, 20) > 0.7}
    first = random_masks(masks, torch.Generator().manual_seed(3))
    second = random_masks(masks, torch.Generator().manual_seed(3))

    assert torch.equal(first["w"], second["w"])
