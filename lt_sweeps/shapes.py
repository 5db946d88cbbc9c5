"""Input shapes of the data sets and the shapes each model accepts.

:func:`validate_config` uses these tables to reject a model that cannot take a data
set's examples (``model=conv2 data=digits``) before any data is loaded, instead of
failing with a shape error in the first training step.
"""

from __future__ import annotations

# Shape of one example: (features,) for vectors, (channels, height, width) for images.
DATA_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": (64,),
    "mnist1d": (40,),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}

# Example shapes each model is defined for; None means any shape, flattened.
MODEL_INPUT_SHAPES: dict[str, tuple[tuple[int, ...], ...] | None] = {
    "mlp": None,
    "lenet_300_100": ((1, 28, 28),),
    "conv2": ((3, 32, 32),),
    "conv4": ((3, 32, 32),),
    "conv6": ((3, 32, 32),),
    "resnet20": ((3, 32, 32),),
    "vgg16": ((3, 32, 32),),
}


def describe_shape(shape: tuple[int, ...]) -> str:
    """Return ``64 features`` for a vector shape and ``3x32x32 images`` for an image shape."""
    if len(shape) == 1:
        return f"{shape[0]} features"
    return "x".join(str(size) for size in shape) + " images"


def model_data_mismatch(model: str, data: str) -> str | None:
    """Return a one-line error when ``model`` cannot take ``data``'s examples, else None.

    Unknown names return None: the name checks report those.
    """
    accepted = MODEL_INPUT_SHAPES.get(model)
    shape = DATA_INPUT_SHAPES.get(data)
    if accepted is None or shape is None or shape in accepted:
        return None

    fitting_data = [name for name, data_shape in DATA_INPUT_SHAPES.items() if data_shape in accepted]
    fitting_models = [
        name for name, shapes in MODEL_INPUT_SHAPES.items() if shapes is None or shape in shapes
    ]
    accepted_text = " or ".join(describe_shape(accepted_shape) for accepted_shape in accepted)
    return (
        f"model={model} does not fit data={data}: {model} takes {accepted_text} and {data} has "
        f"{describe_shape(shape)}; use data={' or data='.join(fitting_data)}, "
        f"or model={' or model='.join(fitting_models)} for data={data}"
    )
