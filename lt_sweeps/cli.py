"""Command-line entry for ``train.py``: turns bad input into one line and an exit code."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from lt_sweeps.config import ConfigError, unknown_key_message, validate_config
from lt_sweeps.sweeps import trial as sweep_trial

log = logging.getLogger(__name__)

USAGE_ERROR_EXIT_CODE = 2


def run_job(cfg: DictConfig) -> float:
    """Validate ``cfg``, run one IMP experiment and return the last round's test accuracy.

    Values are validated and the data is loaded before the W&B run starts. In a single
    run an invalid value exits with code 2 and one line on stderr. In a
    multirun the error is raised, so Hydra records the job as failed and goes on with
    the next one.
    """
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        parameters = sweep_trial.sweep_parameters()
        if parameters is not None:
            sweep_trial.check_parameters_reached_hydra(cfg, parameters, dict(HydraConfig.get().runtime.choices))
        validate_config(cfg)
        experiment = prepare_experiment(cfg, output_dir)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR_EXIT_CODE) from None

    results = experiment.run()
    log.info("results in %s", output_dir)
    return results[-1].test_acc


def prepare_experiment(cfg: DictConfig, output_dir: Path):
    """Check W&B credentials, load the data and build the network, before any W&B run starts."""
    # Imported here so that invalid values are reported before torch and wandb load.
    from lt_sweeps.imp import LotteryExperiment
    from lt_sweeps.tracking import check_online_credentials

    check_online_credentials(cfg.logger.mode)
    check_accelerator_available(cfg.trainer.accelerator, cfg.trainer.devices)
    return LotteryExperiment(cfg, output_dir)


def check_accelerator_available(accelerator: str, devices: Any) -> None:
    """Raise ConfigError when the trainer requests a device this machine lacks.

    A device list such as ``[1]`` picks one GPU, so it is invalid when training would
    run on the CPU: Lightning counts CPU devices as processes, never by index.
    """
    import torch

    gpu_available = torch.cuda.is_available() or torch.backends.mps.is_available()
    available = {
        "gpu": gpu_available,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(accelerator, True):
        raise ConfigError(
            f"trainer.accelerator={accelerator} is invalid on this machine: no such device is available, "
            "use trainer.accelerator=auto or cpu"
        )

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not gpu_available)
    if on_cpu and OmegaConf.is_list(devices):
        raise ConfigError(
            f"trainer.devices={list(devices)} is invalid when training on the CPU: a device list picks a GPU, use trainer.devices=1"
        )


def describe_error(error: BaseException) -> str:
    """Return a one-line description of a configuration error from Hydra or this project."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        options = [name for name in error.options if not name.endswith("_schema")]
        return f"{group}={option} is invalid: allowed values are {', '.join(options)}"

    if isinstance(error, OverrideParseException):
        return f"cannot parse override {error.override!r}: {error.message.splitlines()[0]}"

    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and cause.full_key:
        return unknown_key_message(cause.full_key)
    if isinstance(cause, ValidationError) and cause.full_key:
        return (
            f"{cause.full_key} is invalid: {cause.msg.splitlines()[0]}; "
            "`python train.py --cfg job` shows each key with a valid default value"
        )

    # The first line of Hydra's own message names the problem (an unparsable override,
    # an unknown group); later lines only repeat it.
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first_line


def main(hydra_entry: Callable[[], object]) -> int:
    """Call a ``@hydra.main`` function and return the process exit code.

    Bad input (an unknown config group option, a value of the wrong type, a value out of
    range) prints one line to stderr and returns 2. HYDRA_FULL_ERROR=1 set by the user
    shows Hydra's full report instead.
    """
    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"

    # With HYDRA_FULL_ERROR set, Hydra re-raises errors instead of printing a report
    # and exiting, so they can be shortened here.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        parameters = sweep_trial.sweep_parameters()
        if parameters is not None:
            sys.argv = sweep_trial.null_text_to_null(sys.argv, parameters)
        hydra_entry()
    except (ConfigError, HydraException, OmegaConfBaseException) as error:
        if user_wants_traceback:
            raise
        print(f"error: {describe_error(error)}", file=sys.stderr)
        return USAGE_ERROR_EXIT_CODE
    return 0
