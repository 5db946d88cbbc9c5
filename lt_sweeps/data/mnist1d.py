"""MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package and cached.

``mnist1d.data.make_dataset`` builds the signals from templates in its own source and
never touches the network (``mnist1d.data.get_dataset`` is the function that
downloads, and it is not used here). The result is cached as an ``.npz`` file, read
back without pickle.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def generate(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    """Generate MNIST-1D with the package's default arguments but ``num_samples`` and ``seed``.

    ``make_dataset`` seeds Python's and numpy's global generators. Their states are
    restored afterwards, so the run's own seeding is unaffected.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        dataset = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {key: dataset[key] for key in ("x", "y", "x_test", "y_test")}


def load_mnist1d(root: Path, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load MNIST-1D from the cache in ``root/mnist1d/``, generating it on first use.

    Returns:
        Training signals (float32, N x 40), training labels (int64), test signals and
        test labels.
    """
    cache = root / "mnist1d" / f"mnist1d-{num_samples}-seed{seed}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        log.info("read mnist1d from %s", cache)
    else:
        arrays = generate(num_samples, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.stem + ".part.npz")
        np.savez(partial, **arrays)
        partial.replace(cache)
        log.info("generated mnist1d (%d examples, seed %d) into %s", num_samples, seed, cache)

    return (
        torch.from_numpy(arrays["x"].astype(np.float32)),
        torch.from_numpy(arrays["y"].astype(np.int64)),
        torch.from_numpy(arrays["x_test"].astype(np.float32)),
        torch.from_numpy(arrays["y_test"].astype(np.int64)),
    )
