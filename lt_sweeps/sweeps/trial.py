"""The side of a sweep that runs inside ``train.py``: values from the agent, groups, stops.

``wandb agent`` (and the local runner, which does the same) writes a trial's values to
the file named by WANDB_SWEEP_PARAM_PATH and passes them on the command line. wandb.init
reads that file into the run config under the sweep's names, so this module makes sure
that Hydra received the same values before any training starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lt_sweeps.config import ConfigError

# Set by the local runner for each trial: the local sweep's id, which groups its runs.
LOCAL_SWEEP_ID_VARIABLE = "LT_SWEEP_LOCAL_ID"

# A file with this name in a run's output directory requests a stop after the current
# round. The local runner writes it when hyperband stops a trial.
# NOTE: wandb agent stops a run with SIGTERM instead, which Lightning turns into an
# error inside the current round, so that run ends as failed after its logged rounds.
STOP_FILE_NAME = "STOP"

NO_VALUE = object()


def sweep_parameters() -> dict[str, Any] | None:
    """Return the sweep's values for this run (name to value), or None outside a sweep.

    Raises:
        ConfigError: when WANDB_SWEEP_PARAM_PATH names a file that cannot be read.
    """
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path:
        return None

    from wandb.sdk.lib import config_util

    try:
        return config_util.dict_from_config_file(path, must_exist=True) or {}
    except config_util.ConfigError as error:
        raise ConfigError(f"WANDB_SWEEP_PARAM_PATH={path} is invalid: {error}") from None


def null_text_to_null(arguments: list[str], parameters: dict[str, Any]) -> list[str]:
    """Return ``arguments`` with each ``name=None`` of a null sweep value written ``name=null``.

    The agent writes every value as ``name=str(value)``, so a YAML null arrives as the
    text ``None``, which Hydra would keep as a string.
    """
    null_names = {name for name, value in parameters.items() if value is None}
    rewritten = []
    for argument in arguments:
        name, separator, value = argument.partition("=")
        if separator and value == "None" and name.lstrip("+") in null_names:
            argument = f"{name}=null"
        rewritten.append(argument)
    return rewritten


def check_parameters_reached_hydra(cfg: DictConfig, parameters: dict[str, Any], choices: dict[str, Any]) -> None:
    """Raise ConfigError unless every sweep value equals the value Hydra composed.

    ``choices`` are Hydra's config group choices. A mismatch means that the sweep's
    ``command`` does not pass the values, so the run would train other values than W&B
    shows for it.
    """
    for name in parameters:
        if name.startswith("+"):
            raise ConfigError(
                f"sweep parameter {name} is invalid: the '+' would become part of the W&B config name; "
                f"name it {name.lstrip('+')}"
            )

    missed = []
    for name, sweep_value in parameters.items():
        hydra_value = hydra_value_of(cfg, name, choices)
        if hydra_value is NO_VALUE or not same_value(hydra_value, sweep_value):
            hydra_text = "missing" if hydra_value is NO_VALUE else repr(hydra_value)
            missed.append(f"{name} (sweep {sweep_value!r}, Hydra {hydra_text})")

    if missed:
        raise ConfigError(
            f"sweep parameters never reached Hydra: {', '.join(missed)}; add the item ${{args_no_hyphens}} "
            "to the sweep's command, after ${program}"
        )


def hydra_value_of(cfg: DictConfig, name: str, choices: dict[str, Any]) -> Any:
    """Return the plain value of the dotted key ``name`` in ``cfg`` (a group's choice for a group)."""
    if name in choices:
        return choices[name]

    value = OmegaConf.select(cfg, name, default=NO_VALUE)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def same_value(hydra_value: Any, sweep_value: Any) -> bool:
    """Return whether two values agree, where an int equals the same float but not a bool."""
    if isinstance(hydra_value, bool) or isinstance(sweep_value, bool):
        return type(hydra_value) is type(sweep_value) and hydra_value == sweep_value
    return hydra_value == sweep_value


def default_group() -> str | None:
    """Return the W&B group of a run in a sweep or a Hydra multirun, else None.

    Runs of one W&B sweep share ``sweep-<id>``, runs of one local sweep
    ``sweep-<local id>``, and jobs of one Hydra multirun ``multirun-<sweep dir>``.
    """
    sweep_id = os.environ.get("WANDB_SWEEP_ID") or os.environ.get(LOCAL_SWEEP_ID_VARIABLE)
    if sweep_id:
        return f"sweep-{sweep_id}"

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        return f"multirun-{sweep_dir.parent.name}-{sweep_dir.name}"
    return None


def stop_requested(output_dir: Path) -> bool:
    """Return whether the run in ``output_dir`` was asked to stop after its current round."""
    return (output_dir / STOP_FILE_NAME).exists()
