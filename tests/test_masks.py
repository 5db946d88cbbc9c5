"""Mask maths on plain tensors: no Lightning, no W&B."""

from __future__ import annotations

import pytest
import torch

from lt_sweeps.masks import (
    apply_masks,
    full_masks,
    keep_count,
    layer_rates,
    layer_sparsity,
    layerwise_masks,
    prunable_parameters,
    prune_by_magnitude,
    remaining_fraction,
)
from lt_sweeps.models import MLP


def random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(300, 64, generator=generator),
        "fc2.weight": torch.randn(100, 300, generator=generator),
        "fc3.weight": torch.randn(10, 100, generator=generator),
    }


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.35, 0.5])
def test_prune_exact_fraction_per_layer(rate: float) -> None:
    weights = random_weights()
    masks = layerwise_masks(weights, full_masks(weights), {name: rate for name in weights}, times_pruned=1)

    for name, mask in masks.items():
        assert int(mask.sum()) == round(weights[name].numel() * (1 - rate)), name


def test_prune_removes_smallest_magnitudes() -> None:
    weight = torch.tensor([[0.5, -0.1, 2.0], [-3.0, 0.05, 0.7]])
    mask = prune_by_magnitude(weight, torch.ones_like(weight, dtype=torch.bool), keep=3)

    assert mask.tolist() == [[False, False, True], [True, False, True]]


@pytest.mark.parametrize("rate", [0.2, 0.35])
def test_masks_only_shrink(rate: float) -> None:
    weights = random_weights()
    masks = full_masks(weights)

    for times_pruned in range(1, 8):
        # New magnitudes every round: the pruned set must still only grow.
        weights = random_weights(seed=times_pruned)
        new_masks = layerwise_masks(weights, masks, {name: rate for name in weights}, times_pruned)
        for name in masks:
            assert not (new_masks[name] & ~masks[name]).any(), f"{name} revived a weight at round {times_pruned}"
        masks = new_masks


@pytest.mark.parametrize("times_pruned", [1, 3, 7, 12])
@pytest.mark.parametrize("rate", [0.2, 0.35])
def test_sparsity_after_k_prunings(rate: float, times_pruned: int) -> None:
    weights = random_weights()
    masks = full_masks(weights)
    for k in range(1, times_pruned + 1):
        masks = layerwise_masks(weights, masks, {name: rate for name in weights}, k)

    for name, sparsity in layer_sparsity(masks).items():
        size = weights[f"{name}.weight"].numel()
        expected = 1 - (1 - rate) ** times_pruned
        assert abs(sparsity - expected) * size <= 1.0, name


def test_output_layer_gets_its_own_rate() -> None:
    rates = layer_rates(["fc1.weight", "fc2.weight", "fc3.weight", "fc3.bias"], 0.2, 0.1, "fc3")

    assert rates == {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1, "fc3.bias": 0.1}


def test_output_rate_zero_keeps_layer_dense() -> None:
    weights = random_weights()
    rates = layer_rates(list(weights), 0.2, 0.0, "fc3")
    masks = layerwise_masks(weights, full_masks(weights), rates, times_pruned=3)

    assert bool(masks["fc3.weight"].all())


def test_same_seed_gives_identical_masks() -> None:
    first = layerwise_masks(random_weights(seed=7), full_masks(random_weights(seed=7)), dict.fromkeys(random_weights(), 0.3), 1)
    second = layerwise_masks(random_weights(seed=7), full_masks(random_weights(seed=7)), dict.fromkeys(random_weights(), 0.3), 1)

    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_ties_are_broken_deterministically() -> None:
    weight = torch.ones(4, 4)
    first = prune_by_magnitude(weight, torch.ones_like(weight, dtype=torch.bool), keep=6)
    second = prune_by_magnitude(weight.clone(), torch.ones_like(weight, dtype=torch.bool), keep=6)

    assert int(first.sum()) == 6
    assert torch.equal(first, second)


def test_prunable_parameters_skip_biases() -> None:
    model = MLP(64, [30, 20], 10)

    assert list(prunable_parameters(model)) == ["fc1.weight", "fc2.weight", "fc3.weight"]


def test_prunable_parameters_with_bias() -> None:
    model = MLP(64, [30], 10)

    assert list(prunable_parameters(model, prune_bias=True)) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_total_remaining_is_weighted_by_size() -> None:
    masks = {"a": torch.zeros(100, dtype=torch.bool), "b": torch.ones(300, dtype=torch.bool)}

    assert remaining_fraction(masks) == pytest.approx(0.75)


def test_apply_masks_sets_exact_zeros() -> None:
    weights = {"w": torch.full((3, 3), float("nan"))}
    mask = torch.eye(3, dtype=torch.bool)
    apply_masks(weights, {"w": mask})

    assert bool((weights["w"][~mask] == 0).all())
    assert not bool(torch.signbit(weights["w"][~mask]).any())


@pytest.mark.parametrize(("size", "rate", "times", "expected"), [(1000, 0.2, 1, 800), (1000, 0.2, 2, 640), (10, 0.5, 3, 1), (7, 0.0, 5, 7)])
def test_keep_count(size: int, rate: float, times: int, expected: int) -> None:
    assert keep_count(size, rate, times) == expected
