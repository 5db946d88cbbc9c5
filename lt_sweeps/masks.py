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


# Layer types that ``pruning.conv_rate`` applies to; every other prunable layer is
# fully connected and pruned at ``pruning.rate``.
CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_kinds(model: nn.Module, names: list[str], output_layer: str) -> dict[str, str]:
    """Return the kind of each prunable parameter: ``output``, ``conv`` or ``fc``."""
    modules = dict(model.named_modules())
    kinds: dict[str, str] = {}
    for name in names:
        module_name = name.rpartition(".")[0]
        if module_name == output_layer:
            kinds[name] = "output"
        elif isinstance(modules[module_name], CONV_LAYERS):
            kinds[name] = "conv"
        else:
            kinds[name] = "fc"
    return kinds


def pruning_groups(kinds: dict[str, str], rates: dict[str, float], scope: str) -> list[list[str]]:
    """Return the groups of parameters that share one magnitude threshold.

    ``layerwise`` puts every parameter in its own group. ``global`` puts every
    non-output parameter with the same rate in one group, so conv and fully connected
    layers share a threshold unless ``pruning.conv_rate`` sets them apart. The output
    layer's parameters stay in groups of their own, pruned at the output rate.

    Raises:
        ValueError: for a scope other than ``layerwise`` or ``global``.
    """
    if scope == "layerwise":
        return [[name] for name in kinds]
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}")

    groups: dict[object, list[str]] = {}
    for name, kind in kinds.items():
        key = ("output", name) if kind == "output" else ("rate", rates[name])
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def global_magnitude_masks(parameters: dict[str, torch.Tensor], masks: Masks, keep: int) -> Masks:
    """Keep the ``keep`` largest-magnitude live weights across all of ``masks`` together.

    One threshold applies to every parameter, so layers end with different sparsities.
    Only the parameters named in ``masks`` are ranked; pruned weights stay pruned.
    """
    names = list(masks)
    flat_weights = torch.cat([parameters[name].detach().flatten() for name in names])
    flat_masks = torch.cat([masks[name].flatten() for name in names])
    flat_new = prune_by_magnitude(flat_weights, flat_masks, keep)

    new_masks: Masks = {}
    start = 0
    for name in names:
        size = masks[name].numel()
        new_masks[name] = flat_new[start : start + size].view_as(masks[name])
        start += size
    return new_masks


def grouped_masks(
    parameters: dict[str, torch.Tensor],
    masks: Masks,
    groups: list[list[str]],
    rates: dict[str, float],
    times_pruned: int,
) -> Masks:
    """Prune each group to ``keep_count(group size, rate, times_pruned)`` weights.

    A group of one parameter is pruned on its own; a larger group shares one magnitude
    threshold (:func:`global_magnitude_masks`). Every parameter of a group must have the
    same rate, as :func:`pruning_groups` guarantees.
    """
    new_masks: Masks = {}
    for group in groups:
        group_masks = {name: masks[name] for name in group}
        size = sum(mask.numel() for mask in group_masks.values())
        keep = keep_count(size, rates[group[0]], times_pruned)
        new_masks.update(global_magnitude_masks(parameters, group_masks, keep))
    return new_masks


def times_pruned_at(round_index: int, schedule: str, rounds: int) -> int:
    """Return how many rate-sized prunings the masks of ``round_index`` amount to.

    ``iterative`` prunes once a round. ``oneshot`` prunes at round 1 straight to the
    sparsity that ``rounds - 1`` iterative rounds reach.

    Raises:
        ValueError: for a schedule other than ``iterative`` or ``oneshot``.
    """
    if schedule == "iterative":
        return round_index
    if schedule == "oneshot":
        return 0 if round_index == 0 else rounds - 1
    raise ValueError(f"unknown pruning schedule {schedule!r}")


def random_masks(masks: Masks, generator: torch.Generator) -> Masks:
    """Return masks with as many live entries per parameter as ``masks``, at random positions.

    Positions are drawn uniformly without replacement with ``generator``, so the same
    generator seed gives the same masks.
    """
    new_masks: Masks = {}
    for name, mask in masks.items():
        keep = int(mask.sum())
        order = torch.randperm(mask.numel(), generator=generator)
        new_mask = torch.zeros(mask.numel(), dtype=torch.bool)
        new_mask[order[:keep]] = True
        new_masks[name] = new_mask.view_as(mask).to(mask.device)
    return new_masks


def kind_rates(kinds: dict[str, str], rate: float, conv_rate: float | None, output_rate: float | None) -> dict[str, float]:
    """Return each parameter's pruning rate from its kind (see :func:`layer_kinds`).

    ``conv_rate`` None means ``rate``; ``output_rate`` None means half of ``rate``.
    """
    by_kind = {
        "fc": rate,
        "conv": rate if conv_rate is None else conv_rate,
        "output": rate / 2 if output_rate is None else output_rate,
    }
    return {name: by_kind[kind] for name, kind in kinds.items()}
