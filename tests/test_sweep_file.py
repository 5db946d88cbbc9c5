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
from lt_sweeps.sweeps.runner import LocalSweep, Trial
from lt_sweeps.sweeps.sweep_file import check_parameter_name, is_metric_key, load_sweep_file, validate_sweep

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
    (
        "min above max",
        with_changes(method="random", parameters={"pruning.rate": {"min": 0.5, "max": 0.1}}),
        "pruning.rate in bad.yaml is invalid: min 0.5 is greater than max 0.1; swap min and max",
    ),
    (
        "rate value out of range",
        with_changes(parameters={"pruning.rate": {"values": [0.1, 1.5]}}),
        "sweep parameter pruning.rate in bad.yaml has an invalid value 1.5: pruning.rate=1.5 is invalid",
    ),
    (
        "unknown activation",
        with_changes(parameters={"model.activation": {"values": ["relu", "swish"]}}),
        "sweep parameter model.activation in bad.yaml has an invalid value 'swish': model.activation='swish' is invalid",
    ),
    (
        "fixed value out of range",
        with_changes(parameters={"pruning.rounds": {"value": 0}}),
        "sweep parameter pruning.rounds in bad.yaml has an invalid value 0",
    ),
    (
        "uniform max out of range",
        with_changes(method="random", parameters={"pruning.rate": {"distribution": "uniform", "min": 0.1, "max": 1.5}}),
        "sweep parameter pruning.rate in bad.yaml has an invalid max 1.5",
    ),
    (
        "int_uniform min out of range",
        with_changes(method="random", parameters={"trainer.max_epochs": {"min": 0, "max": 3}}),
        "sweep parameter trainer.max_epochs in bad.yaml has an invalid min 0",
    ),
    (
        "log_uniform_values max out of range",
        with_changes(method="random", parameters={"pruning.rate": {"distribution": "log_uniform_values", "min": 0.1, "max": 2}}),
        "sweep parameter pruning.rate in bad.yaml has an invalid max 2",
    ),
    (
        "wrong type",
        with_changes(parameters={"trainer.max_epochs": {"values": [2, "many"]}}),
        "sweep parameter trainer.max_epochs in bad.yaml has an invalid value 'many'",
    ),
    (
        "null for a number",
        with_changes(parameters={"pruning.rate": {"values": [None]}}),
        "sweep parameter pruning.rate in bad.yaml has an invalid value None",
    ),
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


def test_values_checked_with_overrides() -> None:
    sweep = with_changes(parameters={"pruning.rounds": {"values": [1, 3]}})
    validate_sweep(copy.deepcopy(sweep), "oneshot.yaml", CONF_DIR)

    with pytest.raises(ConfigError, match="pruning.rounds in oneshot.yaml has an invalid value 1: .*oneshot"):
        validate_sweep(sweep, "oneshot.yaml", CONF_DIR, ["pruning.schedule=oneshot"])


def test_null_value_checked_as_null() -> None:
    sweep = with_changes(parameters={"pruning.output_rate": {"values": [None, 0.1]}})
    assert validate_sweep(sweep, "null.yaml", CONF_DIR)["method"] == "grid"


def test_invalid_extra_override_rejected() -> None:
    with pytest.raises(ConfigError) as error:
        validate_sweep(copy.deepcopy(VALID_SWEEP), "good.yaml", CONF_DIR, ["seed=3", "trainer.max_epochs=0"])
    assert str(error.value).startswith("extra overrides seed=3 trainer.max_epochs=0 give an invalid config:")
    assert "trainer.max_epochs=0 is invalid" in str(error.value)


def test_misspelled_extra_override_named() -> None:
    with pytest.raises(ConfigError) as error:
        validate_sweep(copy.deepcopy(VALID_SWEEP), "good.yaml", CONF_DIR, ["pruning.ratee=0.3"])
    assert str(error.value) == (
        "extra overrides pruning.ratee=0.3 are invalid: unknown config key pruning.ratee: "
        "check its spelling, `python train.py --cfg job` lists every key"
    )


def readme_quick_trial_overrides() -> list[str]:
    """Return the Hydra overrides of the README's quick trial of a shipped sweep file."""
    readme = (ROOT / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("lt-sweep run sweeps/") and "--count 2 " in line]
    assert len(lines) == 1, lines
    return lines[0].split(" -- ")[1].split()


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.name)
def test_readme_quick_trial_accepted(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    overrides = readme_quick_trial_overrides()

    sweep = LocalSweep(path, tmp_path / "sweep", overrides)

    assert sweep.overrides == overrides
    assert not (tmp_path / "sweep").exists()


def test_readme_runner_example_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    readme = (ROOT / "README.md").read_text()
    example = next(line for line in readme.splitlines() if line.startswith("lt-sweep run sweeps/bayes_search.yaml"))
    overrides = [item.rstrip("]") for item in example.split("[-- ")[1].split() if "=" in item]
    assert overrides

    LocalSweep(ROOT / "sweeps" / "bayes_search.yaml", tmp_path / "sweep", overrides)


def test_run_help_explains_count(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        commands.main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--count COUNT number of trials to start in this invocation (required" in help_text


def test_best_trial_keeps_earlier_on_tie(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    sweep_file = tmp_path / "tie.yaml"
    sweep_file.write_text(yaml.safe_dump(VALID_SWEEP))
    sweep = LocalSweep(sweep_file, tmp_path / "sweep", [])
    for number, accuracy in enumerate([0.5, 0.9, 0.9, 0.7], start=1):
        trial = Trial(number=number, run_id=f"run{number}", parameters={}, directory=str(tmp_path / str(number)))
        trial.state, trial.summary = "finished", {"ticket/test_acc": accuracy}
        sweep.trials.append(trial)

    assert sweep.best_trial().number == 2
    assert [trial.number for trial in sweep.ranked_trials()] == [2, 3, 4, 1]


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
    sweep_file.write_text("program: train.py\ncommand: [${env}, ${program}]\n")
    with pytest.raises(ConfigError) as error:
        load_sweep_file(sweep_file)
    message = str(error.value)
    assert message.startswith(f"sweep file {sweep_file} is not valid YAML at line 2, column 12: ")
    assert "\n" not in message


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


@pytest.mark.parametrize(
    "metric",
    ["ticket/is_winning", "sparsity/conv1", "sparsity/stage2.0.conv1", "sparsity/fc1.bias", "control/random_mask_test_acc"],
)
def test_logged_metric_accepted(metric: str) -> None:
    assert is_metric_key(metric)


@pytest.mark.parametrize("metric", ["sparsity/", "ticket/winning", "control/bogus_test_acc"])
def test_unlogged_metric_rejected(metric: str) -> None:
    assert not is_metric_key(metric)
