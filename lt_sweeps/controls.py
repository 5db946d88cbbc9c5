"""Controls that decide whether a ticket wins: networks at the ticket's per-layer sparsity.

``reinit`` trains the ticket's mask from a fresh random initialization (Frankle &
Carbin, ICLR 2019): if the ticket's own initial weights matter, it loses. ``random_mask``
trains a random mask with the ticket's per-layer counts from the ticket's rewind point:
if the pruned structure matters, it loses. A ticket wins a round when it beats every
enabled control and stays within ``pruning.win_tolerance`` of the dense network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lt_sweeps.masks import Masks, apply_masks, prunable_parameters, random_masks

# Seed offsets per round, far apart so that control draws never repeat the run's seed.
REINIT_SEED_STRIDE = 1_000_003
RANDOM_MASK_SEED_STRIDE = 2_000_029


def build_control(
    name: str,
    new_model: Callable[[], nn.Module],
    start_state: dict[str, torch.Tensor],
    masks: Masks,
    prune_bias: bool,
    seed: int,
    round_index: int,
) -> tuple[nn.Module, dict[str, nn.Parameter], Masks]:
    """Build the control ``name`` of one round, with its masks already applied.

    ``new_model`` builds a freshly initialized network; ``start_state`` is the state the
    ticket starts the round from. Returns the network, its prunable parameters and its
    masks, which have the same number of live weights per layer as ``masks``.

    Raises:
        ValueError: for a name other than ``reinit`` or ``random_mask``.
    """
    if name == "reinit":
        with torch.random.fork_rng():
            torch.manual_seed(seed + REINIT_SEED_STRIDE * (round_index + 1))
            control = new_model()
        control_masks = {parameter: mask.clone() for parameter, mask in masks.items()}
    elif name == "random_mask":
        # Building the network draws from the global generator; forking keeps the
        # ticket's own random stream the same with or without controls.
        with torch.random.fork_rng():
            control = new_model()
        control.load_state_dict(start_state)
        generator = torch.Generator().manual_seed(seed + RANDOM_MASK_SEED_STRIDE * (round_index + 1))
        control_masks = random_masks(masks, generator)
    else:
        raise ValueError(f"unknown control {name!r}")

    parameters = prunable_parameters(control, prune_bias)
    apply_masks(parameters, control_masks)
    return control, parameters, control_masks


def is_winning(test_acc: float, dense_test_acc: float, control_test_accs: dict[str, float], tolerance: float) -> bool:
    """Return whether a ticket wins: above every control, and at most ``tolerance`` below dense.

    Accuracies are fractions in [0, 1]. A tie with a control loses. With no control
    enabled only the comparison with dense counts.
    """
    beats_controls = all(test_acc > control for control in control_test_accs.values())
    return beats_controls and test_acc >= dense_test_acc - tolerance
