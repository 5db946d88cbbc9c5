"""UCI handwritten digits as scikit-learn ships them: no file or download needed."""

from __future__ import annotations

import torch


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Load scikit-learn's bundled UCI digits: 1,797 flattened 8x8 images scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()

    # Pixel values are counts from 0 to 16 on the 8x8 grid.
    inputs = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    return inputs, labels
