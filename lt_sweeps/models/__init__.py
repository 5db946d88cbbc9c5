"""Networks that the experiments prune, built by name from the ``model`` config group.

Every model names its layers (``fc1``, ``conv3``, ``stage2.0.conv1``, ...) so that
per-layer metrics read ``sparsity/<layer>``, and exposes ``output_layer``, the name of
the layer that ``pruning.output_rate`` applies to.

=================  ==========================  ====================================
name               input                       architecture
=================  ==========================  ====================================
``mlp``            any, flattened              ``model.hidden`` fully connected layers
``lenet_300_100``  1x28x28 (MNIST)             784-300-100-10, Frankle & Carbin 2019
``conv2/4/6``      3x32x32 (CIFAR-10)          Frankle & Carbin 2019
``resnet20``       3x32x32 (CIFAR-10)          open_lth ``cifar_resnet_20``
``vgg16``          3x32x32 (CIFAR-10)          open_lth ``cifar_vgg_16``
=================  ==========================  ====================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from omegaconf import DictConfig
from torch import nn

from lt_sweeps.config import ConfigError
from lt_sweeps.models.conv import CONV_PLANS, ConvNet
from lt_sweeps.models.init import initialize
from lt_sweeps.models.mlp import ACTIVATION_LAYERS, MLP
from lt_sweeps.models.resnet import CifarResNet
from lt_sweeps.models.vgg import CifarVGG
from lt_sweeps.shapes import MODEL_INPUT_SHAPES, describe_shape

__all__ = ["ACTIVATION_LAYERS", "MLP", "ConvNet", "CifarResNet", "CifarVGG", "build_model"]

LENET_HIDDEN = [300, 100]


def build_model(model: DictConfig, input_shape: int | Sequence[int], num_classes: int) -> nn.Module:
    """Build the network named by ``model.name`` for examples of ``input_shape``.

    ``input_shape`` is the shape of one example, (features,) or (channels, height,
    width); a plain int means that many features.

    Raises:
        ConfigError: when the model is not defined for examples of that shape.
        ValueError: when ``model.name`` is unknown.
    """
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(int(size) for size in input_shape)
    check_input_shape(model.name, shape)

    if model.name == "mlp":
        network = MLP(math.prod(shape), list(model.hidden), num_classes, model.activation)
    elif model.name == "lenet_300_100":
        network = MLP(math.prod(shape), LENET_HIDDEN, num_classes, "relu")
    elif model.name in CONV_PLANS:
        network = ConvNet(CONV_PLANS[model.name], shape, num_classes)
    elif model.name == "resnet20":
        network = CifarResNet(shape[0], num_classes, width=model.width)
    elif model.name == "vgg16":
        network = CifarVGG(shape[0], num_classes)
    else:
        raise ValueError(f"unknown model {model.name!r}")

    initialize(network, model.get("init", "default"))
    return network


def check_input_shape(name: str, shape: tuple[int, ...]) -> None:
    """Raise ConfigError when model ``name`` is not defined for examples of ``shape``."""
    accepted = MODEL_INPUT_SHAPES.get(name)
    if accepted is None or shape in accepted:
        return
    accepted_text = " or ".join(describe_shape(accepted_shape) for accepted_shape in accepted)
    raise ConfigError(f"model={name} takes {accepted_text}, but the data has {describe_shape(shape)}: choose a model for this data")
