"""Measure what per-batch preprocessing costs when serving CIFAR-10-sized batches.

Serves epochs of random uint8 images (50,000 x 3 x 32 x 32 by default, batches of
128) through TensorBatches three ways: plain slicing, scaling plus normalization, and
normalization plus random crop and flip. Prints each epoch's time and its ratio to
plain slicing, and, for scale, the time of one conv2 training step on a batch.

    PYTHONPATH=. python benchmarks/batch_transforms.py [--examples N] [--batch-size B] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf

from lt_sweeps.data import BatchTransform, Split, TensorBatches
from lt_sweeps.models import build_model


def epoch_seconds(batches: TensorBatches) -> float:
    start = time.perf_counter()
    for inputs, _ in batches:
        inputs.sum()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50_000, help="images in the epoch")
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per variant; the fastest counts")
    args = parser.parse_args()

    images = torch.randint(0, 256, (args.examples, 3, 32, 32), dtype=torch.uint8)
    split = Split(images, torch.randint(0, 10, (args.examples,)))
    mean = torch.full((3, 1, 1), 0.5)
    std = torch.full((3, 1, 1), 0.25)
    variants = {
        "plain slicing": None,
        "normalize": BatchTransform(1 / 255, mean, std),
        "normalize + crop + flip": BatchTransform(1 / 255, mean, std, crop_padding=4, horizontal_flip=True),
    }

    # A first pass pages the images into memory, so that the plain epoch is not charged for it.
    epoch_seconds(TensorBatches(split, args.batch_size, shuffle=True))

    # Variants take turns, and each keeps its fastest epoch, so that load from other
    # processes on the machine distorts the ratios less.
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):
        for name, transform in variants.items():
            seconds = epoch_seconds(TensorBatches(split, args.batch_size, shuffle=True, transform=transform))
            best[name] = min(best[name], seconds)

    baseline = best["plain slicing"]
    for name, seconds in best.items():
        print(f"{name:26s} {seconds:7.3f} s/epoch  ratio {seconds / baseline:5.2f}")

    model = build_model(OmegaConf.create({"name": "conv2", "init": "default"}), (3, 32, 32), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = torch.randn(args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch_size,))
    start = time.perf_counter()
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), labels).backward()
        optimizer.step()
    step = (time.perf_counter() - start) / 5
    print(f"conv2 training step        {step * 1000:7.1f} ms/batch, {step * len(split) / args.batch_size:7.1f} s/epoch")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
