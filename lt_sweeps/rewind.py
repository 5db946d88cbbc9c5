"""The rewind point of IMP: where the surviving weights restart every round.

``pruning.rewind`` chooses it. ``init`` is the initialization (iteration 0, Frankle &
Carbin, ICLR 2019). ``step`` is the dense round's weights after ``pruning.rewind_step``
optimizer steps (late rewinding, Frankle et al., "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020). ``none`` keeps the trained weights, so each
round fine-tunes the previous one.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn

from lt_sweeps.config import ConfigError

log = logging.getLogger(__name__)


def check_rewind_step(pruning: DictConfig, max_epochs: int, batches_per_epoch: int) -> None:
    """Raise ConfigError when ``pruning.rewind_step`` lies beyond the dense round.

    The dense round makes ``max_epochs * batches_per_epoch`` optimizer steps; the rewind
    point can be any of them, the last included.
    """
    if pruning.rewind != "step":
        if pruning.rewind_step != 0:
            log.warning(
                "pruning.rewind_step=%d is ignored with pruning.rewind=%s: set pruning.rewind=step to use it",
                pruning.rewind_step,
                pruning.rewind,
            )
        return

    dense_steps = max_epochs * batches_per_epoch
    if pruning.rewind_step > dense_steps:
        raise ConfigError(
            f"pruning.rewind_step={pruning.rewind_step} is invalid: the dense round makes only "
            f"{dense_steps} optimizer steps ({max_epochs} epochs x {batches_per_epoch} batches), "
            f"use a step from 0 to {dense_steps}"
        )


class RewindPointCallback(pl.Callback):
    """Copy the model's state (parameters and buffers) after ``step`` optimizer steps.

    It joins the dense round's Trainer. ``state`` stays None until the step is reached;
    step 0 is the state at the start of training.
    """

    def __init__(self, model: nn.Module, step: int) -> None:
        self.model = model
        self.step = step
        self.state: dict[str, torch.Tensor] | None = None

    def _capture(self) -> None:
        self.state = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.step == 0:
            self._capture()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        # trainer.global_step counts optimizer steps and has already counted this one.
        if self.state is None and trainer.global_step == self.step:
            self._capture()
