"""Data sets held in memory and served as whole-tensor batches.

Models in lottery-ticket studies are small, so a per-sample DataLoader costs more than
the training step itself. :class:`TensorBatches` slices shuffled tensors instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from lt_sweeps.config import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Inputs (float32, one row per example) and integer class labels."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


class TensorBatches:
    """Iterable of ``(inputs, labels)`` batches cut from tensors held in memory.

    With ``shuffle`` the order changes every epoch, drawn from a generator seeded by
    ``seed`` so that two runs with the same seed see the same batches.
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self):
        count = len(self.split)
        if self.shuffle:
            order = torch.randperm(count, generator=self.generator)
        else:
            order = torch.arange(count)

        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.split.inputs[index], self.split.labels[index]


def split_examples(
    inputs: torch.Tensor, labels: torch.Tensor, train_size: int, val_size: int, seed: int
) -> tuple[Split, Split, Split]:
    """Shuffle the examples with ``seed`` and cut them into train, validation and test.

    Raises:
        ConfigError: when train and validation leave no example for the test set.
    """
    count = len(labels)
    if train_size + val_size >= count:
        raise ConfigError(
            f"data.train_size + data.val_size = {train_size + val_size} leaves no test examples "
            f"out of {count}: lower one of them"
        )

    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    train = order[:train_size]
    val = order[train_size : train_size + val_size]
    test = order[train_size + val_size :]
    return (
        Split(inputs[train], labels[train]),
        Split(inputs[val], labels[val]),
        Split(inputs[test], labels[test]),
    )


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Load scikit-learn's bundled UCI digits: 1,797 flattened 8x8 images scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()

    # Pixel values are counts from 0 to 16 on the 8x8 grid.
    inputs = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    return inputs, labels


class InMemoryDataModule(pl.LightningDataModule):
    """Train, validation and test splits of a data set that fits in memory."""

    def __init__(self, train: Split, val: Split, test: Split, batch_size: int, seed: int) -> None:
        super().__init__()
        self.train, self.val, self.test = train, val, test
        self.batch_size = batch_size
        self.seed = seed

    @property
    def num_features(self) -> int:
        return self.train.inputs[0].numel()

    @property
    def num_classes(self) -> int:
        return int(torch.cat([self.train.labels, self.val.labels, self.test.labels]).max()) + 1

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(self.train, self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(self.val, len(self.val), shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return TensorBatches(self.test, len(self.test), shuffle=False)


def build_datamodule(data: DictConfig, seed: int) -> InMemoryDataModule:
    """Load the data set named by ``data.name`` and split it; ``seed`` orders the batches."""
    if data.name != "digits":
        raise ValueError(f"unknown data set {data.name!r}")

    inputs, labels = load_digits_tensors()
    train, val, test = split_examples(inputs, labels, data.train_size, data.val_size, data.split_seed)
    log.info("data %s: %d train, %d validation, %d test examples", data.name, len(train), len(val), len(test))
    return InMemoryDataModule(train, val, test, data.batch_size, seed)
