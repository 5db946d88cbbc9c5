"""Structured config schemas and the validation that runs before any training.

Hydra merges every YAML file of ``conf/`` onto a dataclass schema registered here, so a
value of the wrong type (``optimizer.lr=abc``) fails at composition. Value ranges and
names are checked by :func:`validate_config`, which raises :class:`ConfigError` with a
one-line message that names the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from lt_sweeps.shapes import DATA_INPUT_SHAPES, model_data_mismatch

ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid", "leaky_relu", "elu", "silu")
DATASETS = ("digits", "mnist1d", "mnist", "fashion_mnist", "cifar10")
MODELS = ("mlp", "lenet_300_100", "conv2", "conv4", "conv6", "resnet20", "vgg16")
# Weight initializations of lt_sweeps.models.init.
INITS = ("default", "glorot_normal", "kaiming_normal")
OPTIMIZERS = ("adam", "sgd")
CONTROLS = ("reinit", "random_mask")
REWIND_MODES = ("init", "step", "none")
PRUNING_SCOPES = ("layerwise", "global")
PRUNING_SCHEDULES = ("iterative", "oneshot")
LOGGER_MODES = ("online", "offline", "disabled")
# Lightning accelerators that one process can train on.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
# Seeds that torch, numpy and Python's random module all accept.
MAX_SEED = 2**32 - 1
GROUPS = ("data", "model", "optimizer", "pruning", "trainer", "logger")


class ConfigError(ValueError):
    """An invalid configuration value, with a message that names the key and the fix."""


@dataclass
class DataConfig:
    name: str = "digits"
    batch_size: int = 60
    train_size: int = 1100
    val_size: int = 300
    # Seed of the train/validation/test split. It is separate from the run's seed, so
    # every run of a sweep trains and tests on the same examples.
    split_seed: int = 0


# Default of data.root: a cache folder outside the repository, so that nothing is
# written beside the code. LT_SWEEPS_DATA_ROOT overrides it.
DATA_ROOT_DEFAULT = "${oc.env:LT_SWEEPS_DATA_ROOT,'~/.cache/lt-sweeps'}"


@dataclass
class Mnist1dDataConfig:
    name: str = "mnist1d"
    # Folder of the generated data set's cache file.
    root: str = DATA_ROOT_DEFAULT
    batch_size: int = 100
    # Examples the mnist1d generator draws. It keeps 80% for training and 20% for test.
    num_samples: int = 5000
    # Seed of the mnist1d generator. 42 is the package's default (mnist1d 0.0.2).
    generator_seed: int = 42
    # Training examples used; null means all that the validation set leaves.
    train_size: Optional[int] = None
    # Validation examples held out from the training examples.
    val_size: int = 500
    split_seed: int = 0


@dataclass
class ImageDataConfig:
    name: str = MISSING
    # Folder that contains <name>/ with the data set's files.
    root: str = DATA_ROOT_DEFAULT
    # Fetch missing files from the data set's official location and check their MD5.
    download: bool = False
    batch_size: int = 60
    # Examples per validation or test batch; only memory depends on it.
    eval_batch_size: int = 1000
    train_size: Optional[int] = None
    # Validation examples held out from the official training set.
    val_size: int = 5000
    split_seed: int = 0
    # Per-channel normalization to zero mean and unit variance. Null mean or std are
    # computed on the training examples.
    normalize: bool = True
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    # Augmentation of training batches: random crops from images padded with zeros by
    # crop_padding pixels on each side, and random horizontal flips.
    augment: bool = False
    crop_padding: int = 4
    horizontal_flip: bool = True


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [300, 100])
    activation: str = "relu"
    init: str = "default"


@dataclass
class FixedModelConfig:
    # A network whose layers are fixed by its name: lenet_300_100, conv2, conv4, conv6, vgg16.
    name: str = MISSING
    init: str = "default"


@dataclass
class ResNetModelConfig:
    name: str = "resnet20"
    init: str = "kaiming_normal"
    # Filters of the first stage; the second and third have 2 and 4 times as many.
    width: int = 16


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 1.2e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass
class PruningConfig:
    rate: float = 0.2
    # Rate of the output layer; null means half of ``rate``.
    output_rate: Optional[float] = None
    rounds: int = 10
    prune_bias: bool = False
    # One control name, a list of names, or null for none.
    control: Any = None
    win_tolerance: float = 0.005
    # Mask that round 0 starts from: a safetensors file or a mask artifact <name>:<alias>.
    mask_artifact: Optional[str] = None
    # Where survivors restart each round: init (iteration 0), step (after rewind_step
    # optimizer steps of the dense round) or none (continue from the trained weights).
    rewind: str = "init"
    rewind_step: int = 0
    # layerwise: a threshold per layer; global: one threshold across layers.
    scope: str = "layerwise"
    # Rate of conv layers; null means the same as ``rate``.
    conv_rate: Optional[float] = None
    # iterative: prune every round; oneshot: prune once, at round 1, to the final sparsity.
    schedule: str = "iterative"


@dataclass
class TrainerConfig:
    max_epochs: int = 25
    accelerator: str = "auto"
    devices: Any = 1
    log_every_n_steps: int = 10
    enable_progress_bar: bool = False
    deterministic: bool = False


@dataclass
class LoggerConfig:
    # online, offline, disabled; null picks online when W&B credentials exist, else offline.
    mode: Optional[str] = None
    project: str = "lt-sweeps"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    # Seconds that wandb.init waits for the W&B server before falling back to offline.
    init_timeout: float = 90.0


@dataclass
class ExperimentConfig:
    # Each group is typed by its own schema, chosen in the group's YAML file, so that
    # models and data sets with different keys can share one top level.
    data: Any = MISSING
    model: Any = MISSING
    optimizer: Any = MISSING
    pruning: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    seed: int = 0


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore under the names ``conf/`` uses."""
    store = ConfigStore.instance()
    store.store(name="experiment_schema", node=ExperimentConfig)
    store.store(group="data", name="data_schema", node=DataConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="data", name="mnist1d_data_schema", node=Mnist1dDataConfig)
    store.store(group="data", name="image_data_schema", node=ImageDataConfig)
    store.store(group="model", name="fixed_model_schema", node=FixedModelConfig)
    store.store(group="model", name="resnet_model_schema", node=ResNetModelConfig)
    store.store(group="optimizer", name="optimizer_schema", node=OptimizerConfig)
    store.store(group="pruning", name="pruning_schema", node=PruningConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="logger", name="logger_schema", node=LoggerConfig)


def control_names(control: Any) -> list[str]:
    """Return ``pruning.control`` as a list of names: null, one name or a list."""
    if control is None:
        return []
    if isinstance(control, str):
        return [] if control.lower() in ("", "none", "null") else [control]
    if isinstance(control, (list, tuple, ListConfig)):
        return [str(name) for name in control]
    raise ConfigError(
        f"pruning.control={control!r} is invalid: use a name or a list of names from {CONTROLS}"
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    _require(
        value in allowed,
        f"{key}={value!r} is invalid: allowed values are {', '.join(allowed)}",
    )


def group_options_with_key(group: str, key: str) -> list[str]:
    """Return the options of ``group`` (data sets or models) whose schema has ``key``."""
    options_by_schema = {
        "data": {
            DataConfig: ("digits",),
            Mnist1dDataConfig: ("mnist1d",),
            ImageDataConfig: ("mnist", "fashion_mnist", "cifar10"),
        },
        "model": {
            ModelConfig: ("mlp",),
            FixedModelConfig: ("lenet_300_100", "conv2", "conv4", "conv6", "vgg16"),
            ResNetModelConfig: ("resnet20",),
        },
    }
    options: list[str] = []
    for schema, names in options_by_schema.get(group, {}).items():
        if key in {item.name for item in fields(schema)}:
            options.extend(names)
    return options


def unknown_key_message(dotted_key: str, choice: str | None = None) -> str:
    """Return the one-line error for a config key that the chosen schema lacks.

    When another data set or model has the key, the message names them, because the
    spelling is then right and the group choice is what differs.
    """
    group, _, key = dotted_key.partition(".")
    options = group_options_with_key(group, key) if key else []
    if options:
        chosen = f"{group}={choice} has" if choice else f"the chosen {group} has"
        return f"{chosen} no key {dotted_key}: it is a key of {group}={', '.join(options)}"
    return f"unknown config key {dotted_key}: check its spelling, `python train.py --cfg job` lists every key"


def check_known_keys(cfg: DictConfig) -> None:
    """Raise ConfigError on a key that no schema defines, such as ``+pruning.ratee=0.3``.

    Hydra's ``+key=value`` adds keys even to structured configs, so a misspelled key
    would otherwise be stored and silently ignored.
    """
    allowed_top = {item.name for item in fields(ExperimentConfig)}
    for key in cfg:
        _require(key in allowed_top, f"unknown config key {key}: check its spelling, `python train.py --cfg job` lists every key")

    for group in GROUPS:
        schema = OmegaConf.get_type(cfg[group])
        if not is_dataclass(schema):
            continue
        allowed = {item.name for item in fields(schema)}
        for key in cfg[group]:
            _require(key in allowed, unknown_key_message(f"{group}.{key}", cfg[group].get("name")))


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError on the first value that is out of range or unknown.

    Runs before any data is loaded or any W&B run is created, so a bad value costs
    seconds and leaves no run behind.
    """
    check_known_keys(cfg)
    _require(
        0 <= cfg.seed <= MAX_SEED,
        f"seed={cfg.seed} is invalid: use an integer from 0 to {MAX_SEED}",
    )
    _check_choice("data", cfg.data.name, DATASETS)
    _require(cfg.data.batch_size >= 1, f"data.batch_size={cfg.data.batch_size} is invalid: use 1 or more")
    if cfg.data.get("train_size") is not None:
        _require(cfg.data.train_size >= 1, f"data.train_size={cfg.data.train_size} is invalid: use 1 or more")
    _require(cfg.data.val_size >= 1, f"data.val_size={cfg.data.val_size} is invalid: use 1 or more")

    _check_choice("model", cfg.model.name, MODELS)
    if cfg.model.name == "mlp":
        hidden = list(cfg.model.hidden)
        _require(
            len(hidden) > 0,
            "model.hidden=[] is invalid: give at least one hidden layer, for example model.hidden=[300,100]",
        )
        _require(
            all(units >= 1 for units in hidden),
            f"model.hidden={hidden} is invalid: every layer needs 1 or more units",
        )
        _check_choice("model.activation", cfg.model.activation, ACTIVATIONS)
    validate_data_and_model(cfg)

    _check_choice("optimizer", cfg.optimizer.name, OPTIMIZERS)
    _require(cfg.optimizer.lr > 0, f"optimizer.lr={cfg.optimizer.lr} is invalid: use a value above 0, for example 1.2e-3")
    _require(
        0 <= cfg.optimizer.momentum < 1,
        f"optimizer.momentum={cfg.optimizer.momentum} is invalid: use a value in [0, 1)",
    )
    _require(
        cfg.optimizer.weight_decay >= 0,
        f"optimizer.weight_decay={cfg.optimizer.weight_decay} is invalid: use 0 or more",
    )

    pruning = cfg.pruning
    _require(
        0 < pruning.rate < 1,
        f"pruning.rate={pruning.rate} is invalid: use a fraction in (0, 1), for example pruning.rate=0.2",
    )
    if pruning.output_rate is not None:
        _require(
            0 <= pruning.output_rate < 1,
            f"pruning.output_rate={pruning.output_rate} is invalid: use a fraction in [0, 1), or null for half of pruning.rate",
        )
    _require(pruning.rounds >= 1, f"pruning.rounds={pruning.rounds} is invalid: use 1 or more (round 0 is dense)")
    _require(
        0 <= pruning.win_tolerance < 1,
        f"pruning.win_tolerance={pruning.win_tolerance} is invalid: use an accuracy difference in [0, 1)",
    )
    for name in control_names(pruning.control):
        _check_choice("pruning.control", name, CONTROLS)
    _check_choice("pruning.rewind", pruning.rewind, REWIND_MODES)
    _require(
        pruning.rewind_step >= 0,
        f"pruning.rewind_step={pruning.rewind_step} is invalid: use an optimizer step count of 0 or more",
    )
    _check_choice("pruning.scope", pruning.scope, PRUNING_SCOPES)
    if pruning.conv_rate is not None:
        _require(
            0 <= pruning.conv_rate < 1,
            f"pruning.conv_rate={pruning.conv_rate} is invalid: use a fraction in [0, 1), or null for pruning.rate",
        )
    _check_choice("pruning.schedule", pruning.schedule, PRUNING_SCHEDULES)
    _require(
        pruning.schedule != "oneshot" or pruning.rounds >= 2,
        f"pruning.rounds={pruning.rounds} is invalid with pruning.schedule=oneshot: use 2 or more, "
        "the one-shot ticket reaches the sparsity of pruning.rounds - 1 iterative rounds",
    )

    _require(cfg.trainer.max_epochs >= 1, f"trainer.max_epochs={cfg.trainer.max_epochs} is invalid: use 1 or more")
    _require(
        cfg.trainer.log_every_n_steps >= 1,
        f"trainer.log_every_n_steps={cfg.trainer.log_every_n_steps} is invalid: use 1 or more",
    )
    _check_choice("trainer.accelerator", cfg.trainer.accelerator, ACCELERATORS)
    _require(
        cfg.trainer.devices in (1, "1", "auto") or OmegaConf.is_list(cfg.trainer.devices) and len(cfg.trainer.devices) == 1,
        f"trainer.devices={cfg.trainer.devices} is invalid: each run trains on one device, so use 1 (or [k] for "
        "device k) and run one sweep agent per GPU to use several",
    )
    _require(
        cfg.logger.init_timeout > 0,
        f"logger.init_timeout={cfg.logger.init_timeout} is invalid: use a number of seconds above 0",
    )
    if cfg.logger.mode is not None:
        _check_choice("logger.mode", cfg.logger.mode, LOGGER_MODES)


def validate_data_and_model(cfg: DictConfig) -> None:
    """Raise ConfigError when the model cannot take the data or a data or model key is out of range."""
    mismatch = model_data_mismatch(cfg.model.name, cfg.data.name)
    _require(mismatch is None, str(mismatch))
    _check_choice("model.init", cfg.model.get("init", "default"), INITS)
    if "width" in cfg.model:
        _require(cfg.model.width >= 1, f"model.width={cfg.model.width} is invalid: use 1 or more, for example 16")

    data = cfg.data
    if "num_samples" in data:
        _require(
            data.num_samples >= 10,
            f"data.num_samples={data.num_samples} is invalid: mnist1d draws the same number of each of 10 classes, use 10 or more",
        )
    if "eval_batch_size" in data:
        _require(data.eval_batch_size >= 1, f"data.eval_batch_size={data.eval_batch_size} is invalid: use 1 or more")
    if "crop_padding" in data:
        _require(data.crop_padding >= 0, f"data.crop_padding={data.crop_padding} is invalid: use 0 or more pixels")

    channels = DATA_INPUT_SHAPES[data.name][0]
    for key in ("mean", "std"):
        values = data.get(key)
        if values is None:
            continue
        _require(
            len(values) == channels,
            f"data.{key}={list(values)} is invalid: {data.name} has {channels} channel(s), give one value each, or null to compute them",
        )
    if data.get("std") is not None:
        _require(all(value > 0 for value in data.std), f"data.std={list(data.std)} is invalid: every value must be above 0")


def to_plain_dict(cfg: DictConfig) -> dict[str, Any]:
    """Return the resolved config as nested plain dicts and lists, as W&B stores it."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
