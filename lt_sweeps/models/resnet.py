"""ResNet-20 for CIFAR-10 (He et al. 2016), as open_lth's ``cifar_resnet_20`` builds it.

A 3x3 stem convolution is followed by three stages of three residual blocks with
``width``, 2 x ``width`` and 4 x ``width`` filters (16, 32, 64 by default), global
average pooling and the linear output layer ``fc``. The first block of stages 2 and 3
halves the resolution and projects its shortcut with a strided 1x1 convolution.
Convolutions have no bias because BatchNorm follows each of them.

Layers are named ``stem``, ``stage2.0.conv1``, ``stage2.0.shortcut_conv``, ... and
``fc``, so per-layer metrics read ``sparsity/stage2.0.conv1``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BLOCKS_PER_STAGE = 3


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection."""

    def __init__(self, in_filters: int, out_filters: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_filters, out_filters, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_filters)
        self.conv2 = nn.Conv2d(out_filters, out_filters, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_filters)

        self.shortcut_conv: nn.Conv2d | None = None
        self.shortcut_bn: nn.BatchNorm2d | None = None
        if stride != 1 or in_filters != out_filters:
            self.shortcut_conv = nn.Conv2d(in_filters, out_filters, kernel_size=1, stride=stride, bias=False)
            self.shortcut_bn = nn.BatchNorm2d(out_filters)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = F.relu(self.bn1(self.conv1(inputs)))
        outputs = self.bn2(self.conv2(outputs))

        shortcut = inputs
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_bn(self.shortcut_conv(inputs))
        return F.relu(outputs + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6 x ``blocks_per_stage`` + 2) for (channels, height, width) image inputs."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16, blocks_per_stage: int = BLOCKS_PER_STAGE) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)

        filters = width
        for stage in (1, 2, 3):
            stage_filters = width * 2 ** (stage - 1)
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if stage > 1 and block == 0 else 1
                blocks.append(BasicBlock(filters, stage_filters, stride))
                filters = stage_filters
            self.add_module(f"stage{stage}", nn.Sequential(*blocks))

        self.output_layer = "fc"
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs = F.relu(self.stem_bn(self.stem(inputs)))
        outputs = self.stage3(self.stage2(self.stage1(outputs)))
        outputs = F.adaptive_avg_pool2d(outputs, 1).flatten(start_dim=1)
        return self.fc(outputs)
