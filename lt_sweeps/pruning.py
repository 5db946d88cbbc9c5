"""Lightning callback that keeps pruned weights at exactly zero during training."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lt_sweeps.masks import Masks, apply_masks


class MaskCallback(pl.Callback):
    """Hold a mask set and enforce it around every optimizer step.

    Gradients of pruned weights are zeroed before the step, so optimizer state such as
    Adam's moments or SGD's momentum buffer never grows for them, and the weights are
    masked again after the step, which also undoes weight decay. The mask maths live in
    :mod:`lt_sweeps.masks`; this class only calls them at the right hooks.
    """

    def __init__(self, parameters: dict[str, torch.nn.Parameter], masks: Masks) -> None:
        self.parameters = parameters
        self.masks = masks

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.masks = {name: mask.to(self.parameters[name].device) for name, mask in self.masks.items()}
        apply_masks(self.parameters, self.masks)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        for name, mask in self.masks.items():
            gradient = self.parameters[name].grad
            if gradient is not None:
                gradient.masked_fill_(~mask, 0.0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        apply_masks(self.parameters, self.masks)
