"""Build a trial's command line and parameter file exactly as ``wandb agent`` does.

The macros (``${args_no_hyphens}``, ``${envvar:NAME}``, ...) are expanded by W&B's own
functions in ``wandb.sdk.launch.sweeps.utils``. The last step, which replaces each
``${macro}`` element by its list, sits inside ``wandb.wandb_agent.Agent._command_run``
(wandb 0.31) and cannot be called alone, so :func:`expand_command` repeats those lines;
a test compares both on the same trial.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args
from wandb.sdk.lib import config_util

# The interpreter that wandb agent names; the local runner puts its own Python first on PATH.
AGENT_INTERPRETER = "python"


def agent_command_args(parameters: dict[str, Any]) -> dict[str, list[Any]]:
    """Return W&B's macro values for ``parameters`` (name to value), as the agent builds them."""
    return create_sweep_command_args({"args": {name: {"value": value} for name, value in parameters.items()}})


def expand_command(command: list[str] | None, program: str, parameters: dict[str, Any], args_json_file: Path) -> list[str]:
    """Return the argument list that ``wandb agent`` runs for one trial.

    ``command`` is the sweep file's ``command`` (None for W&B's default), ``program``
    its ``program``, and ``args_json_file`` the path that ``${args_json_file}`` names.
    """
    sweep_command = create_sweep_command(list(command) if command else None)

    macro_values: dict[str, list[Any]] = agent_command_args(parameters)
    if "${args_json_file}" in sweep_command:
        args_json_file.parent.mkdir(parents=True, exist_ok=True)
        args_json_file.write_text(macro_values["args_json"][0])

    macro_values["interpreter"] = [AGENT_INTERPRETER]
    macro_values["program"] = [program]
    macro_values["args_json_file"] = [str(args_json_file)]
    if platform.system() != "Windows":
        macro_values["env"] = ["/usr/bin/env"]

    expanded: list[str] = []
    for element in sweep_command:
        element = str(element)
        if element.startswith("${") and element.endswith("}"):
            expanded += macro_values.get(element[2:-1]) or []
        else:
            expanded.append(element)
    return expanded


def write_parameter_file(path: Path, parameters: dict[str, Any]) -> None:
    """Write the trial's parameter file that wandb.init reads from WANDB_SWEEP_PARAM_PATH.

    The format is the agent's: ``wandb_version: 1`` and one ``{name: {value: ...}}``
    entry per parameter, written by W&B's own function.
    """
    config_util.save_config_file_from_dict(str(path), {name: {"value": value} for name, value in parameters.items()})
