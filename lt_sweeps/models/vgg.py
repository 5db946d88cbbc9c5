"""VGG-16 for CIFAR-10, as open_lth's ``cifar_vgg_16`` builds it.

Thirteen 3x3 convolutions (padding 1) with BatchNorm and ReLU, in five groups of
64, 128, 256, 512 and 512 filters with 2x2 max pooling between groups, then 2x2
average pooling and one linear output layer ``fc`` on the 512 features. This is the
CIFAR-10 variant of the rewinding papers: it has no 4096-unit hidden layers.

Layers are named ``conv1`` ... ``conv13`` with ``bn1`` ... ``bn13``, and ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Filters of each convolution; "M" is a 2x2 max pooling.
VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class CifarVGG(nn.Module):
    """VGG-16 with BatchNorm for 32x32 images with ``in_channels`` channels."""

    def __init__(self, in_channels: int, num_classes: int, plan: tuple = VGG16_PLAN) -> None:
        super().__init__()
        self.plan = plan

        channels = in_channels
        index = 0
        for item in plan:
            if item == "M":
                continue
            index += 1
            self.add_module(f"conv{index}", nn.Conv2d(channels, item, kernel_size=3, padding=1))
            self.add_module(f"bn{index}", nn.BatchNorm2d(item))
            channels = item

        self.output_layer = "fc"
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = inputs
        index = 0
        for item in self.plan:
            if item == "M":
                outputs = F.max_pool2d(outputs, kernel_size=2)
                continue
            index += 1
            conv = getattr(self, f"conv{index}")
            norm = getattr(self, f"bn{index}")
            outputs = F.relu(norm(conv(outputs)))

        # The four poolings leave 2x2 from 32x32; averaging them leaves one value a filter.
        outputs = F.avg_pool2d(outputs, kernel_size=2).flatten(start_dim=1)
        return self.fc(outputs)
