"""Load a W&B sweep file and check it against W&B's schema and this project's config.

A sweep file is valid here when ``wandb sweep`` accepts it (W&B's JSON schema from the
``sweeps`` package) and every run it starts can work. That means each parameter is a
dotted name of a real config key, the ``command`` passes the values to Hydra, and the
metric is a key that the runs log. Every problem raises :class:`ConfigError` with one
line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from lt_sweeps.config import CONTROLS, ConfigError, register_configs
from lt_sweeps.sweeps.engine import SweepConfig, schema_violations_from_proposed_config
from lt_sweeps.sweeps.sweep_values import check_sweep_values

METHODS = ("grid", "random", "bayes")

# Macros of W&B's agent that write each value as ``name=value``, the form Hydra reads.
HYDRA_ARGUMENT_MACROS = ("${args_no_hyphens}", "${args_override_hydra}")

# Metric keys of the project's public contract; history keys also land in the summary.
METRIC_KEYS = frozenset(
    {
        "trainer/global_step",
        "train/loss",
        "val/acc",
        "round",
        "ticket/remaining",
        "ticket/sparsity",
        "ticket/test_acc",
        "ticket/best_val_acc",
        "ticket/early_stop_step",
        "ticket/is_winning",
        "ticket/dense_test_acc",
        "ticket/min_winning_remaining",
    }
    | {f"control/{name}_test_acc" for name in CONTROLS}
)
# Layer names of every model: fc1, conv3, stage2.0.conv1, fc1.bias, ...
LAYER_METRIC = re.compile(r"sparsity/[A-Za-z_][\w.]*")

NO_VALUE = object()


def load_sweep_file(path: Path) -> dict[str, Any]:
    """Read the sweep file at ``path`` as a mapping.

    Raises:
        ConfigError: when the file is missing, is not YAML, or is not a mapping.
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"sweep file {path} cannot be read: {error.strerror}") from None

    try:
        sweep = yaml.safe_load(text)
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            problem = getattr(error, "problem", None) or first_line
            raise ConfigError(
                f"sweep file {path} is not valid YAML at line {mark.line + 1}, column {mark.column + 1}: "
                f"{first_line}: {problem}"
            ) from None
        raise ConfigError(f"sweep file {path} is not valid YAML: {first_line}") from None

    if not isinstance(sweep, dict):
        raise ConfigError(f"sweep file {path} is invalid: expected a mapping with program, method and parameters")
    return sweep


def validate_sweep(sweep: dict[str, Any], source: str, conf_dir: Path, overrides: list[str] = ()) -> SweepConfig:
    """Check ``sweep`` and return it with W&B's defaults filled in.

    ``source`` names the file in messages, ``conf_dir`` is the Hydra config directory
    of the sweep's program, and ``overrides`` are Hydra overrides added to every run.

    Raises:
        ConfigError: on the first problem, before any run starts.
    """
    _check_program_and_command(sweep, source)
    _check_method_and_metric(sweep, source)
    _check_parameter_shapes(sweep, source)
    _check_bounds_order(sweep, source)
    _check_schema(sweep, source)

    cfg = compose_program_config(conf_dir, list(overrides))
    for name in sweep["parameters"]:
        check_parameter_name(name, cfg, source)

    config = SweepConfig(sweep)
    check_sweep_values(config["parameters"], source, cfg, list(overrides))
    return config


def compose_program_config(conf_dir: Path, overrides: list[str]) -> DictConfig:
    """Compose the program's config with Hydra, as train.py does, without running it."""
    register_configs()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except Exception as error:
        from lt_sweeps.cli import describe_error

        raise ConfigError(f"extra overrides {' '.join(overrides)} are invalid: {describe_error(error)}") from None


def check_parameter_name(name: str, cfg: DictConfig, source: str) -> None:
    """Raise ConfigError unless ``name`` is the dotted name of a value in ``cfg``."""
    value = OmegaConf.select(cfg, name, default=NO_VALUE)
    if value is NO_VALUE:
        raise ConfigError(
            f"sweep parameter {name} in {source} names no config key: check its spelling, "
            "`python train.py --cfg job` lists every key"
        )

    if isinstance(value, DictConfig):
        raise ConfigError(
            f"sweep parameter {name} in {source} names the config group {name}: W&B would store "
            f"the choice under the same name as the group's values, so sweep its keys such as "
            f"{name}.{next(iter(value), 'key')} instead"
        )


def is_metric_key(name: str) -> bool:
    """Return whether a run of this project logs the metric ``name``."""
    return name in METRIC_KEYS or LAYER_METRIC.fullmatch(name) is not None


def _check_program_and_command(sweep: dict[str, Any], source: str) -> None:
    if not sweep.get("program"):
        raise ConfigError(f"sweep file {source} has no program: add `program: train.py`")

    command = sweep.get("command")
    if not isinstance(command, list) or not any(macro in map(str, command) for macro in HYDRA_ARGUMENT_MACROS):
        raise ConfigError(
            f"sweep file {source} has no command that passes the parameters to Hydra: add a "
            "command with the items ${env}, ${interpreter}, ${program}, ${args_no_hyphens}"
        )


def _check_method_and_metric(sweep: dict[str, Any], source: str) -> None:
    method = sweep.get("method")
    if method not in METHODS:
        raise ConfigError(f"method {method!r} in {source} is invalid: allowed values are {', '.join(METHODS)}")

    metric = sweep.get("metric")
    needs_metric = method == "bayes" or "early_terminate" in sweep
    if metric is None:
        if needs_metric:
            raise ConfigError(f"sweep file {source} has no metric: {method} search and early_terminate need one")
        return

    name = metric.get("name") if isinstance(metric, dict) else None
    if not isinstance(name, str) or not is_metric_key(name):
        raise ConfigError(
            f"metric {name!r} in {source} is never logged by the runs: use a key such as "
            "ticket/test_acc (maximize) or ticket/min_winning_remaining (minimize)"
        )


def _check_parameter_shapes(sweep: dict[str, Any], source: str) -> None:
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(f"sweep file {source} has no parameters: add a mapping of dotted config keys")

    for name, spec in parameters.items():
        if str(name).startswith("+"):
            raise ConfigError(
                f"sweep parameter {name} in {source} is invalid: the '+' would become part of the W&B "
                f"config name; name it {str(name).lstrip('+')}, a key that the config already has"
            )
        if not isinstance(spec, dict):
            raise ConfigError(f"sweep parameter {name} in {source} is invalid: give a mapping such as `values: [...]`")
        if "parameters" in spec:
            raise ConfigError(
                f"sweep parameter {name} in {source} has nested parameters, which reach Hydra as a dict "
                f"it cannot parse: use dotted names such as {name}.{next(iter(spec['parameters'] or {}), 'key')}"
            )


def _check_bounds_order(sweep: dict[str, Any], source: str) -> None:
    for name, spec in sweep["parameters"].items():
        low, high = spec.get("min"), spec.get("max")
        numbers = all(isinstance(bound, (int, float)) and not isinstance(bound, bool) for bound in (low, high))
        if numbers and low > high:
            raise ConfigError(
                f"sweep parameter {name} in {source} is invalid: min {low} is greater than max {high}; swap min and max"
            )


def _check_schema(sweep: dict[str, Any], source: str) -> None:
    for name, spec in sweep["parameters"].items():
        violations = schema_violations_from_proposed_config({"method": sweep["method"], "parameters": {name: spec}})
        if violations:
            raise ConfigError(
                f"sweep parameter {name} in {source} is invalid: {violations[0]}; use `value: x`, "
                "`values: [...]`, or a distribution such as `distribution: uniform, min: 0.1, max: 0.5`"
            )

    violations = schema_violations_from_proposed_config(sweep)
    if violations:
        raise ConfigError(f"sweep file {source} is invalid: {violations[0]}")
