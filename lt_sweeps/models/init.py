"""Weight initializations that the lottery-ticket papers name.

Frankle & Carbin (ICLR 2019) initialize LeNet and Conv-2/4/6 with Glorot (Xavier)
normal weights. open_lth, the code of the rewinding papers, uses Kaiming (He) normal
weights for its CIFAR-10 ResNet and VGG.
"""

from __future__ import annotations

from torch import nn

from lt_sweeps.config import INITS


def initialize(model: nn.Module, scheme: str) -> None:
    """Re-draw the weights of every linear and convolutional layer of ``model`` in place.

    ``default`` keeps PyTorch's own initialization. Biases and BatchNorm parameters
    always keep PyTorch's initialization.

    Raises:
        ValueError: when ``scheme`` is not one of :data:`INITS`.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown initialization {scheme!r}: use one of {', '.join(INITS)}")
    if scheme == "default":
        return

    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if scheme == "glorot_normal":
            nn.init.xavier_normal_(module.weight)
        else:
            nn.init.kaiming_normal_(module.weight)
