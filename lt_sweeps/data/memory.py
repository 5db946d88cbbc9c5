"""Data sets held in memory and served as whole-tensor batches.

Models in lottery-ticket studies are small, so a per-sample DataLoader costs more than
the training step itself. :class:`TensorBatches` slices shuffled tensors instead, and
applies a :class:`~lt_sweeps.data.transforms.BatchTransform` to each batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from lt_sweeps.config import ConfigError
from lt_sweeps.data.transforms import BatchTransform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """Inputs (one row per example, float32 or uint8 pixels) and integer class labels."""

    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


class TensorBatches:
    """Iterable of ``(inputs, labels)`` batches cut from tensors held in memory.

    With ``shuffle`` the order changes every epoch, drawn from a generator seeded by
    ``seed`` so that two runs with the same seed see the same batches. ``transform``
    turns each batch of stored inputs into model inputs; it draws its augmentation from
    the same generator.
    """

    def __init__(
        self, split: Split, batch_size: int, shuffle: bool, seed: int = 0, transform: BatchTransform | None = None
    ) -> None:
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.transform = transform

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
            inputs = self.split.inputs[index]
            if self.transform is not None:
                inputs = self.transform(inputs, self.generator)
            yield inputs, self.split.labels[index]


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
            f"data.train_size={train_size} and data.val_size={val_size} leave no test examples "
            f"out of {count}: keep their sum below {count}"
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


def hold_out_validation(
    inputs: torch.Tensor, labels: torch.Tensor, train_size: int | None, val_size: int, seed: int
) -> tuple[Split, Split]:
    """Shuffle a training set with ``seed`` and cut ``val_size`` validation examples from it.

    ``train_size`` examples of the rest train, or all of them when it is None.

    Raises:
        ConfigError: when the training set has too few examples for the request.
    """
    count = len(labels)
    required = val_size + (train_size or 1)
    if required > count:
        raise ConfigError(
            f"data.val_size={val_size}, data.train_size={train_size} need {required} training examples, "
            f"the data set has {count}: lower them"
        )

    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    val = order[:val_size]
    train = order[val_size:] if train_size is None else order[val_size : val_size + train_size]
    return Split(inputs[train], labels[train]), Split(inputs[val], labels[val])


class InMemoryDataModule(pl.LightningDataModule):
    """Train, validation and test splits of a data set that fits in memory.

    ``transform`` converts every batch (augmenting training batches only);
    ``eval_batch_size`` of None serves each evaluation split as one batch;
    ``num_classes`` of None counts the classes from the labels.
    """

    def __init__(
        self,
        train: Split,
        val: Split,
        test: Split,
        batch_size: int,
        seed: int,
        transform: BatchTransform | None = None,
        eval_batch_size: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        self.train, self.val, self.test = train, val, test
        self.batch_size = batch_size
        self.seed = seed
        self.transform = transform
        self.eval_batch_size = eval_batch_size
        self.class_count = num_classes

    @property
    def num_features(self) -> int:
        return self.train.inputs[0].numel()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example: (features,) or (channels, height, width)."""
        return tuple(self.train.inputs.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.class_count is not None:
            return self.class_count
        return int(torch.cat([self.train.labels, self.val.labels, self.test.labels]).max()) + 1

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(self.train, self.batch_size, shuffle=True, seed=self.seed, transform=self.transform)

    def val_dataloader(self) -> TensorBatches:
        return self._evaluation_batches(self.val)

    def test_dataloader(self) -> TensorBatches:
        return self._evaluation_batches(self.test)

    def _evaluation_batches(self, split: Split) -> TensorBatches:
        transform = None if self.transform is None else self.transform.without_augmentation()
        return TensorBatches(split, self.eval_batch_size or len(split), shuffle=False, transform=transform)
