"""LightningModule that trains one round of a lottery-ticket experiment."""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy


def build_optimizer(parameters: Iterable[nn.Parameter], optimizer: DictConfig) -> torch.optim.Optimizer:
    """Build the optimizer named by ``optimizer.name`` (adam or sgd)."""
    if optimizer.name == "adam":
        return torch.optim.Adam(parameters, lr=optimizer.lr, weight_decay=optimizer.weight_decay)
    if optimizer.name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=optimizer.lr,
            momentum=optimizer.momentum,
            weight_decay=optimizer.weight_decay,
            nesterov=optimizer.nesterov,
        )
    raise ValueError(f"unknown optimizer {optimizer.name!r}")


class LotteryModule(pl.LightningModule):
    """Classifier training with the early-stopping record of the lottery-ticket paper.

    Each validation pass logs ``val/acc``. The module keeps the round's best validation
    accuracy, the optimizer step within the round where it was first reached, and a
    copy of the weights at that step. The round's test accuracy is measured with that
    copy, at the early-stop point.
    """

    def __init__(self, model: nn.Module, optimizer: DictConfig, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.optimizer_config = optimizer
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.best_val_acc = -1.0
        self.best_step = 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        loss = F.cross_entropy(self(inputs), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch
        self.val_accuracy.update(self(inputs), labels)

    def on_validation_epoch_end(self) -> None:
        accuracy = self.val_accuracy.compute().item()
        self.val_accuracy.reset()
        self.log("val/acc", accuracy, on_step=False, on_epoch=True)

        if accuracy > self.best_val_acc:
            self.best_val_acc = accuracy
            self.best_step = self.global_step
            self.best_state = {name: tensor.detach().clone() for name, tensor in self.model.state_dict().items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model.parameters(), self.optimizer_config)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Return the top-1 accuracy of ``model`` over ``batches``, in [0, 1]."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    total = 0

    for inputs, labels in batches:
        predictions = model(inputs.to(device)).argmax(dim=1)
        correct += int((predictions == labels.to(device)).sum())
        total += len(labels)

    model.train(was_training)
    return correct / total
