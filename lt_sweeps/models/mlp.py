"""Fully connected networks: the configurable MLP and LeNet-300-100."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATION_LAYERS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class MLP(nn.Module):
    """Fully connected classifier: ``hidden`` gives the units of each hidden layer.

    ``MLP(784, [300, 100], 10)`` is LeNet-300-100.
    """

    def __init__(self, in_features: int, hidden: list[int], num_classes: int, activation: str = "relu") -> None:
        super().__init__()
        widths = [in_features, *hidden]

        # Layers are direct children, so parameters are named fc1.weight, fc1.bias, ...
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            self.add_module(f"fc{index}", nn.Linear(fan_in, fan_out))
            self.add_module(f"act{index}", ACTIVATION_LAYERS[activation]())

        self.output_layer = f"fc{len(hidden) + 1}"
        self.add_module(self.output_layer, nn.Linear(widths[-1], num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = inputs.flatten(start_dim=1)
        for layer in self.children():
            outputs = layer(outputs)
        return outputs
