"""Conv-2, Conv-4 and Conv-6: the VGG-like CIFAR-10 networks of Frankle & Carbin (ICLR 2019).

Each has pairs of 3x3 convolutions (padding 1, ReLU) followed by 2x2 max pooling: 64
filters in the first pair, 128 in the second and 256 in the third. Three fully
connected layers of 256, 256 and 10 units follow. Layers are named ``conv1``,
``conv2``, ... and ``fc1``, ``fc2``, ``fc3``; ``fc3`` is the output layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Filters of each convolution pair, by depth.
CONV_PLANS = {
    "conv2": (64,),
    "conv4": (64, 128),
    "conv6": (64, 128, 256),
}
HIDDEN_UNITS = (256, 256)


class ConvNet(nn.Module):
    """Conv-2/4/6 for ``input_shape`` = (channels, height, width) images.

    ``filters`` lists the width of each convolution pair; every pair halves the height
    and width.
    """

    def __init__(self, filters: tuple[int, ...], input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.num_convs = 2 * len(filters)

        index = 1
        for pair_filters in filters:
            for _ in range(2):
                self.add_module(f"conv{index}", nn.Conv2d(channels, pair_filters, kernel_size=3, padding=1))
                channels = pair_filters
                index += 1
            height //= 2
            width //= 2

        widths = [channels * height * width, *HIDDEN_UNITS]
        for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            self.add_module(f"fc{index}", nn.Linear(fan_in, fan_out))

        self.output_layer = f"fc{len(HIDDEN_UNITS) + 1}"
        self.add_module(self.output_layer, nn.Linear(widths[-1], num_classes))
        self.num_fcs = len(HIDDEN_UNITS) + 1

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = inputs
        for index in range(1, self.num_convs + 1):
            outputs = F.relu(getattr(self, f"conv{index}")(outputs))
            if index % 2 == 0:
                outputs = F.max_pool2d(outputs, kernel_size=2)

        outputs = outputs.flatten(start_dim=1)
        for index in range(1, self.num_fcs):
            outputs = F.relu(getattr(self, f"fc{index}")(outputs))
        return getattr(self, self.output_layer)(outputs)
