"""Trial command lines: the same as wandb agent's, and their values intact in Hydra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb import wandb_agent

from conftest import CONF_DIR, ROOT, compose_config
from lt_sweeps.sweeps.agent_command import expand_command, write_parameter_file
from lt_sweeps.sweeps.engine import next_run
from lt_sweeps.sweeps.sweep_file import load_sweep_file, validate_sweep
from lt_sweeps.sweeps.trial import null_text_to_null, sweep_parameters

SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))

ODD_VALUES = {
    "optimizer.lr": 1e-05,
    "optimizer.weight_decay": 1e-07,
    "model.hidden": [300, 100],
    "logger.name": "lr sweep a",
    "pruning.prune_bias": True,
    "pruning.output_rate": None,
}
COMMAND = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}", "--tag=${envvar:LT_TEST_TAG}"]


class RecordingProcess:
    """Stands in for wandb's AgentProcess, which would start the program; records its command."""

    commands: list[list[str]] = []

    def __init__(self, command: list[str] | None = None, **kwargs: object) -> None:
        RecordingProcess.commands.append(command)


def agent_command(parameters: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Return the command that wandb's own Agent._command_run builds for ``parameters``."""
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep01")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_RUN_ID", "unset")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "unset")
    monkeypatch.setattr(wandb_agent, "AgentProcess", RecordingProcess)

    agent = wandb_agent.Agent.__new__(wandb_agent.Agent)
    agent._sweep_command = list(COMMAND)
    agent._function = None
    agent._in_jupyter = False
    agent._forward_signals = False
    agent._run_processes = {}
    agent._command_run(
        {"run_id": "run01", "program": "train.py", "args": {name: {"value": value} for name, value in parameters.items()}}
    )
    return RecordingProcess.commands[-1]


def test_command_same_as_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LT_TEST_TAG", "ci")
    expected = agent_command(ODD_VALUES, tmp_path, monkeypatch)
    built = expand_command(COMMAND, "train.py", ODD_VALUES, tmp_path / "args.json")
    assert built == expected
    assert "--tag=ci" in built


def test_parameter_file_same_as_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_command(ODD_VALUES, tmp_path, monkeypatch)
    agent_file = tmp_path / "wandb" / "sweep-sweep01" / "config-run01.yaml"
    written = tmp_path / "local.yaml"
    write_parameter_file(written, ODD_VALUES)
    assert written.read_text() == agent_file.read_text()


def test_agent_values_keep_their_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parameter_file = tmp_path / "config.yaml"
    write_parameter_file(parameter_file, ODD_VALUES)
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(parameter_file))
    arguments = expand_command(COMMAND[:4], "train.py", ODD_VALUES, tmp_path / "args.json")[3:]

    cfg = compose_config(*null_text_to_null(arguments, sweep_parameters()))

    assert cfg.optimizer.lr == 1e-05
    assert isinstance(cfg.optimizer.lr, float)
    assert cfg.optimizer.weight_decay == 1e-07
    assert list(cfg.model.hidden) == [300, 100]
    assert all(isinstance(units, int) for units in cfg.model.hidden)
    assert cfg.logger.name == "lr sweep a"
    assert cfg.pruning.prune_bias is True
    assert cfg.pruning.output_rate is None


def test_none_text_stays_for_other_keys() -> None:
    arguments = ["train.py", "logger.name=None", "pruning.output_rate=None"]
    assert null_text_to_null(arguments, {"pruning.output_rate": None, "logger.name": "None"}) == [
        "train.py",
        "logger.name=None",
        "pruning.output_rate=null",
    ]


def sampled_parameters(path: Path) -> dict:
    sweep = validate_sweep(load_sweep_file(path), path.name, CONF_DIR)
    suggestion = next_run(sweep, [])
    return {name: entry["value"] for name, entry in suggestion.config.items()}


def plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_sampled_command_composes(path: Path, tmp_path: Path) -> None:
    parameters = {name: plain(value) for name, value in sampled_parameters(path).items()}
    sweep = load_sweep_file(path)
    command = expand_command(sweep["command"], str(ROOT / sweep["program"]), parameters, tmp_path / "args.json")
    parameter_file = tmp_path / "config.yaml"
    write_parameter_file(parameter_file, parameters)
    environment = {**os.environ, "WANDB_SWEEP_PARAM_PATH": str(parameter_file)}
    command = [sys.executable if part == "python" else part for part in command]

    process = subprocess.run(
        [*command, "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=120
    )

    assert process.returncode == 0, process.stderr[-2000:]
    composed = yaml.safe_load(process.stdout)
    for name, value in parameters.items():
        node = composed
        for part in name.split("."):
            node = node[part]
        assert node == value, name
