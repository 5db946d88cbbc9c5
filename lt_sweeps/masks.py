"""Mask maths for magnitude pruning: pure functions on tensors.

A mask set maps a parameter name (``fc1.weight``) to a boolean tensor of the same shape,
True where the weight is alive. Counts are planned from the dense size: a layer pruned
``k`` times at rate ``p`` keeps ``round(n * (1 - p) ** k)`` of its ``n`` weights, so its
sparsity is ``1 - (1 - p) ** k`` within half a weight, however many rounds have passed.
"""

from __future__ import annotations

import torch
from torch import nn

Masks = dict[str, torch.Tensor]

# Layer types whose weights are prunable; BatchNorm and other layers are never masked.
PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module, prune_bias: bool = False) -> dict[str, nn.Parameter]:
    """Return the weights (and biases, with ``prune_bias``) of linear and conv layers, by name."""
    parameters: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_LAYERS):
            continue

        prefix = f"{module_name}." if module_name else ""
        parameters[prefix + "weight"] = module.weight
        if prune_bias and module.bias is not None:
            parameters[prefix + "bias"] = module.bias
    return parameters


def full_masks(parameters: dict[str, torch.Tensor]) -> Masks:
    """Return all-alive masks for ``parameters`` (round 0, dense)."""
    return {name: torch.ones_like(tensor, dtype=torch.bool) for name, tensor in parameters.items()}


def keep_count(size: int, rate: float, times_pruned: int) -> int:
    """Return how many of ``size`` weights survive ``times_pruned`` prunings at ``rate``."""
    return round(size * (1.0 - rate) ** times_pruned)


def prune_by_magnitude(weight: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """Return a new mask that keeps the ``keep`` largest-magnitude weights alive in ``mask``.

    Pruned weights stay pruned, so the result is never larger than ``mask``. Ties are
    broken by position, which makes the result deterministic.
    """
    alive = int(mask.sum())
    keep = max(0, min(keep, alive))

    # Pruned weights score -1, below every live magnitude, so they sort first.
    scores = torch.where(mask, weight.detach().abs(), torch.full_like(weight, -1.0, dtype=weight.dtype))
    order = torch.argsort(scores.flatten(), stable=True)

    new_mask = torch.ones(mask.numel(), dtype=torch.bool, device=mask.device)
    new_mask[order[: mask.numel() - keep]] = False
    return new_mask.view_as(mask)


def layer_rates(names: list[str], rate: float, output_rate: float, output_layer: str) -> dict[str, float]:
    """Return the pruning rate of each parameter: ``output_rate`` for the output layer's."""
    return {name: output_rate if name.startswith(f"{output_layer}.") else rate for name in names}


def layerwise_masks(
    parameters: dict[str, torch.Tensor], masks: Masks, rates: dict[str, float], times_pruned: int
) -> Masks:
    """Prune every layer on its own to ``keep_count(size, rate, times_pruned)`` weights."""
    return {
        name: prune_by_magnitude(
            parameters[name], masks[name], keep_count(masks[name].numel(), rates[name], times_pruned)
        )
        for name in masks
    }


def layer_name(parameter_name: str) -> str:
    """Return the name used in metric keys: ``fc1`` for ``fc1.weight``, ``fc1.bias`` unchanged."""
    return parameter_name.removesuffix(".weight")


def layer_sparsity(masks: Masks) -> dict[str, float]:
    """Return the fraction pruned in each masked parameter, keyed by :func:`layer_name`."""
    return {layer_name(name): 1.0 - int(mask.sum()) / mask.numel() for name, mask in masks.items()}


def remaining_fraction(masks: Masks) -> float:
    """Return the fraction of all masked weights still alive, weighted by layer size."""
    alive = sum(int(mask.sum()) for mask in masks.values())
    total = sum(mask.numel() for mask in masks.values())
    return alive / total


@torch.no_grad()
def apply_masks(parameters: dict[str, torch.Tensor], masks: Masks) -> None:
    """Set every pruned entry of ``parameters`` to exactly zero, in place."""
    for name, mask in masks.items():
        parameters[name].masked_fill_(~mask, 0.0)
