"""Sweep files: W&B's schema, real config keys, logged metrics, and W&B's engine on them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from wandb.sdk.wandb_config import Config

from conftest import CONF_DIR, ROOT, compose_config
from lt_sweeps import commands
from lt_sweeps.config import ConfigError, to_plain_dict
from lt_sweeps.sweeps.engine import RunState, SweepConfig, SweepRun, next_run, schema_violations_from_proposed_config, stop_runs
from lt_sweeps.sweeps.sweep_file import check_parameter_name, load_sweep_file, validate_sweep

SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))

VALID_SWEEP = {
    "program": "train.py",
    "method": "grid",
    "metric": {"name": "ticket/test_acc", "goal": "maximize"},
    "parameters": {"optimizer.lr": {"values": [1e-3, 3e-3]}, "pruning.rate": {"values": [0.2, 0.4]}},
    "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"],
}


def with_changes(**changes: object) -> dict:
    sweep = copy.deepcopy(VALID_SWEEP)
    for key, value in changes.items():
        if value is None:
            sweep.pop(key)
        else:
            sweep[key] = value
    return sweep


def test_sweep_files_exist() -> None:
    names = {path.stem for path in SWEEP_FILES}
    assert {"prune_rate_grid", "random_search", "bayes_search", "hyperband_rounds"} <= names


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_sweep_file_passes_wandb_schema(path: Path) -> None:
    sweep = load_sweep_file(path)
    assert schema_violations_from_proposed_config(sweep) == []


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_sweep_file_names_real_keys(path: Path) -> None:
    sweep = load_sweep_file(path)
    cfg = compose_config()
    for name in sweep["parameters"]:
        check_parameter_name(name, cfg, path.name)


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_sweep_file_validates(path: Path) -> None:
    config = validate_sweep(load_sweep_file(path), path.name, CONF_DIR)
    assert isinstance(config, SweepConfig)


def test_hyperband_file_can_stop_runs() -> None:
    sweep = load_sweep_file(ROOT / "sweeps" / "hyperband_rounds.yaml")
    assert sweep["early_terminate"]["type"] == "hyperband"


BAD_SWEEPS = [
    ("unknown method", with_changes(method="annealing"), "method 'annealing'"),
    ("typo in key", with_changes(parameters={"optimizer.lrr": {"values": [0.1]}}), "optimizer.lrr"),
    ("metric never logged", with_changes(metric={"name": "val_acc", "goal": "maximize"}), "'val_acc'"),
    (
        "malformed distribution",
        with_changes(method="random", parameters={"optimizer.lr": {"distribution": "uniform", "min": 0.1}}),
        "optimizer.lr",
    ),
    ("min above max", with_changes(method="random", parameters={"pruning.rate": {"min": 0.5, "max": 0.1}}), "pruning.rate"),
    ("missing program", with_changes(program=None), "program"),
    ("no args macro", with_changes(command=["${env}", "${interpreter}", "${program}"]), "${args_no_hyphens}"),
    ("default command", with_changes(command=None), "${args_no_hyphens}"),
    (
        "nested parameters",
        with_changes(parameters={"model": {"parameters": {"hidden": {"values": [[300, 100]]}}}}),
        "use dotted names",
    ),
    ("plus prefix", with_changes(parameters={"+optimizer.lr": {"values": [0.1]}}), "'+'"),
    ("config group", with_changes(parameters={"optimizer": {"values": ["adam", "sgd"]}}), "config group"),
    ("bayes without metric", with_changes(method="bayes", metric=None), "no metric"),
]


@pytest.mark.parametrize(("sweep", "expected"), [case[1:] for case in BAD_SWEEPS], ids=[case[0] for case in BAD_SWEEPS])
def test_bad_sweep_rejected(sweep: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate_sweep(sweep, "bad.yaml", CONF_DIR)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_valid_sweep_accepted() -> None:
    assert validate_sweep(copy.deepcopy(VALID_SWEEP), "good.yaml", CONF_DIR)["method"] == "grid"


@pytest.mark.parametrize(("sweep", "expected"), [case[1:] for case in BAD_SWEEPS[:3]], ids=[case[0] for case in BAD_SWEEPS[:3]])
def test_bad_sweep_cli_exits_before_trials(
    sweep: dict, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(ROOT)
    sweep_file = tmp_path / "bad.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    sweep_dir = tmp_path / "sweep"

    exit_code = commands.main(["run", str(sweep_file), "--count", "1", "--dir", str(sweep_dir)])

    stderr = capsys.readouterr().err
    assert exit_code == 2
    assert expected in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not sweep_dir.exists()


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    sweep_file = tmp_path / "broken.yaml"
    sweep_file.write_text("command: [${env}, ${program}]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep_file(sweep_file)


def logged_config(parameters: dict) -> dict:
    """Return the run config that wandb.init builds in an agent's run, as W&B's API returns it.

    wandb.run.Run.__init__ (wandb 0.31) updates its Config with the init config and then
    merges the sweep's values locked; this repeats those two calls on W&B's Config.
    """
    overrides = [f"{name}={value}" for name, value in parameters.items()]
    config = Config()
    config._update(to_plain_dict(compose_config(*overrides)), allow_val_change=True, ignore_locked=True)
    config.merge_locked(parameters, user="sweep", _allow_val_change=True)
    return {key: {"value": value} for key, value in config.as_dict().items()}


def test_grid_over_dotted_keys_ends() -> None:
    sweep = SweepConfig(
        {"method": "grid", "parameters": {"optimizer.lr": {"values": [1e-05, 1e-3]}, "model.hidden": {"values": [[300, 100], [32]]}}}
    )
    runs: list[SweepRun] = []
    for _ in range(6):
        suggestion = next_run(sweep, runs)
        if suggestion is None:
            break
        parameters = {name: entry["value"] for name, entry in suggestion.config.items()}
        runs.append(SweepRun(name=f"run-{len(runs)}", state=RunState.finished, config=logged_config(parameters)))

    assert len(runs) == 4
    assert next_run(sweep, runs) is None


def test_logged_config_agrees_with_nested() -> None:
    config = logged_config({"optimizer.lr": 1e-05, "model.hidden": [300, 100]})
    assert config["optimizer.lr"]["value"] == config["optimizer"]["value"]["lr"]
    assert config["model.hidden"]["value"] == config["model"]["value"]["hidden"]


HYPERBAND_SWEEP = {
    "method": "random",
    "metric": {"name": "ticket/test_acc", "goal": "maximize"},
    "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
    "parameters": {"pruning.rate": {"values": [0.2, 0.4]}},
}


def rows(values: list[float]) -> list[dict]:
    return [{"round": index, "ticket/test_acc": value} for index, value in enumerate(values)]


@pytest.mark.parametrize(("running_history", "stopped"), [([0.2, 0.3], ["c"]), ([0.2], [])])
def test_hyperband_stops_trailing_run(running_history: list[float], stopped: list[str]) -> None:
    runs = [
        SweepRun(name="a", state=RunState.finished, history=rows([0.5, 0.6, 0.7, 0.8])),
        SweepRun(name="b", state=RunState.finished, history=rows([0.55, 0.65, 0.7, 0.75])),
        SweepRun(name="c", state=RunState.running, history=rows(running_history)),
    ]
    assert [run.name for run in stop_runs(HYPERBAND_SWEEP, runs)] == stopped


def round_records(values: list[float]) -> list[dict]:
    return [
        {
            "round": index,
            "remaining": 0.8**index,
            "layer_sparsity": {},
            "test_acc": value,
            "best_val_acc": value,
            "early_stop_step": 1,
            "steps": 2,
            "controls": {},
        }
        for index, value in enumerate(values)
    ]


def test_runner_asks_trailing_trial_to_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lt_sweeps.sweeps.runner import LocalSweep, RunningTrial, Trial, read_trial_results
    from lt_sweeps.sweeps.trial import STOP_FILE_NAME

    monkeypatch.chdir(ROOT)
    sweep = LocalSweep(ROOT / "sweeps" / "hyperband_rounds.yaml", tmp_path / "sweep", [])
    for number, values in enumerate([[0.5, 0.6, 0.7, 0.8], [0.55, 0.65, 0.7, 0.75], [0.2, 0.3]], start=1):
        directory = tmp_path / f"trial-{number}"
        directory.mkdir()
        (directory / "rounds.json").write_text(json.dumps(round_records(values)))
        trial = Trial(number=number, run_id=f"run{number}", parameters={"pruning.rate": 0.2}, directory=str(directory))
        if number < 3:
            trial.state = "finished"
            trial.history, trial.summary = read_trial_results(directory)
        sweep.trials.append(trial)

    running = RunningTrial(sweep.trials[2], process=None, slot=0, started=0.0)
    sweep._stop_trials_hyperband_rejects([running])

    assert (tmp_path / "trial-3" / STOP_FILE_NAME).exists()
    assert not (tmp_path / "trial-1" / STOP_FILE_NAME).exists()
