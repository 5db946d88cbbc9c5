"""lt-sweep run end to end: real trials of train.py as offline W&B runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, offline_run_dir, read_wandb_records, records_of_type, run_train
from lt_sweeps.sweeps.agent_command import write_parameter_file

pytestmark = pytest.mark.slow

TINY = ["model.hidden=[32,16]", "trainer.max_epochs=1", "pruning.rounds=2"]
COMMAND = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]


def run_sweep(sweep: dict, sweep_dir: Path, count: int) -> subprocess.CompletedProcess:
    sweep_file = sweep_dir.parent / f"{sweep_dir.name}.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep))
    command = [sys.executable, "-m", "lt_sweeps.commands", "run", str(sweep_file), "--count", str(count)]
    command += ["--dir", str(sweep_dir), "--", *TINY]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(), timeout=300)


def sweep_state(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep-state.json").read_text())


@pytest.fixture(scope="module")
def bayes_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A bayes sweep of three tiny trials, one at a time: two, then one more on resume."""
    sweep = {
        "program": "train.py",
        "method": "bayes",
        "metric": {"name": "ticket/test_acc", "goal": "maximize"},
        "parameters": {
            "optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-2},
            "pruning.rate": {"distribution": "uniform", "min": 0.2, "max": 0.5},
        },
        "command": COMMAND,
    }
    sweep_dir = tmp_path_factory.mktemp("bayes") / "sweep"
    first = run_sweep(sweep, sweep_dir, 2)
    assert first.returncode == 0, first.stderr[-3000:]
    after_first = sweep_state(sweep_dir)
    process = run_sweep(sweep, sweep_dir, 1)
    assert process.returncode == 0, process.stderr[-3000:]

    state = sweep_state(sweep_dir)
    runs = {}
    for trial in state["trials"]:
        records = read_wandb_records(offline_run_dir(Path(trial["directory"])))
        runs[trial["run_id"]] = records_of_type(records, "run")[0]
    return {"first": first, "process": process, "after_first": after_first, "state": state, "runs": runs}


def test_sweep_runs_three_trials(bayes_sweep: dict) -> None:
    assert len(bayes_sweep["state"]["trials"]) == 3
    assert all(trial["state"] == "finished" for trial in bayes_sweep["state"]["trials"])


def test_trial_run_ids_distinct(bayes_sweep: dict) -> None:
    assert len(bayes_sweep["runs"]) == 3
    assert {run["run_id"] for run in bayes_sweep["runs"].values()} == set(bayes_sweep["runs"])


def test_bayes_receives_earlier_results(bayes_sweep: dict) -> None:
    assert [trial["results_seen"] for trial in bayes_sweep["state"]["trials"]] == [0, 1, 2]


def test_sweep_values_in_run_config(bayes_sweep: dict) -> None:
    for trial in bayes_sweep["state"]["trials"]:
        config = bayes_sweep["runs"][trial["run_id"]]["config"]["update"]
        assert config["optimizer.lr"] == trial["parameters"]["optimizer.lr"]
        assert config["optimizer"]["lr"] == config["optimizer.lr"]
        assert config["pruning"]["rate"] == config["pruning.rate"]


def test_sweep_runs_grouped(bayes_sweep: dict) -> None:
    groups = {run["run_group"] for run in bayes_sweep["runs"].values()}
    assert groups == {f"sweep-{bayes_sweep['state']['sweep_id']}"}


def test_no_locked_warnings(bayes_sweep: dict) -> None:
    for trial in bayes_sweep["state"]["trials"]:
        assert "locked" not in (Path(trial["directory"]) / "trial.log").read_text()


def test_table_ranks_by_metric(bayes_sweep: dict) -> None:
    stdout = bayes_sweep["process"].stdout
    lines = stdout.splitlines()
    assert lines[0].split()[:5] == ["rank", "trial", "run", "state", "ticket/test_acc"]
    values = [float(line.split()[4]) for line in lines[1:4]]
    assert len(values) == 3
    assert values == sorted(values, reverse=True)
    assert "wandb sync" in stdout


def test_progress_shows_best(bayes_sweep: dict) -> None:
    assert "best so far" in bayes_sweep["first"].stderr
    assert "trial 2 started (2 of 2 in this invocation)" in bayes_sweep["first"].stderr


def test_resumed_progress_numbers_trials(bayes_sweep: dict) -> None:
    stderr = bayes_sweep["process"].stderr
    assert "trial 3 started (1 of 1 in this invocation)" in stderr
    assert "trial 3 (1 of 1 in this invocation, run " in stderr
    assert "/1 started" not in stderr


def test_resume_keeps_earlier_trials(bayes_sweep: dict) -> None:
    first_ids = [trial["run_id"] for trial in bayes_sweep["after_first"]["trials"]]
    assert [trial["run_id"] for trial in bayes_sweep["state"]["trials"]][:2] == first_ids
    assert bayes_sweep["state"]["sweep_id"] == bayes_sweep["after_first"]["sweep_id"]
    assert "resuming sweep" in bayes_sweep["process"].stderr


@pytest.fixture(scope="module")
def failing_grid(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A grid whose first trial fails while training starts, then a second invocation on the finished grid.

    A missing mask file passes the runner's value checks, because only loading the
    mask finds that it is missing.
    """
    sweep = {
        "program": "train.py",
        "method": "grid",
        "metric": {"name": "ticket/test_acc", "goal": "maximize"},
        "parameters": {"pruning.mask_artifact": {"values": ["missing-mask.safetensors", None]}},
        "command": COMMAND,
    }
    sweep_dir = tmp_path_factory.mktemp("grid") / "sweep"
    first = run_sweep(sweep, sweep_dir, 5)
    after_first = sweep_state(sweep_dir)
    second = run_sweep(sweep, sweep_dir, 5)
    return {"first": first, "second": second, "after_first": after_first, "state": sweep_state(sweep_dir), "dir": sweep_dir}


def test_failing_trial_recorded(failing_grid: dict) -> None:
    assert [trial["state"] for trial in failing_grid["after_first"]["trials"]] == ["failed", "finished"]


def test_failing_trial_fails_command(failing_grid: dict) -> None:
    assert failing_grid["first"].returncode == 1, failing_grid["first"].stderr[-3000:]
    last_line = failing_grid["first"].stderr.strip().splitlines()[-1]
    failed = failing_grid["after_first"]["trials"][0]
    assert last_line.startswith("error: 1 of 2 trials failed")
    assert str(Path(failed["directory"]) / "trial.log") in last_line


def test_failing_trial_keeps_its_error(failing_grid: dict) -> None:
    failed = failing_grid["after_first"]["trials"][0]
    assert "missing-mask.safetensors" in (Path(failed["directory"]) / "trial.log").read_text()


def test_failed_trial_ranked_last(failing_grid: dict) -> None:
    table = failing_grid["first"].stdout.splitlines()
    assert table[1].split()[3] == "finished"
    assert table[2].split()[3] == "failed"


def test_resume_does_not_repeat(failing_grid: dict) -> None:
    assert failing_grid["second"].returncode == 0, failing_grid["second"].stderr[-3000:]
    masks = [trial["parameters"]["pruning.mask_artifact"] for trial in failing_grid["state"]["trials"]]
    assert masks == ["missing-mask.safetensors", None]


def test_changed_sweep_file_rejected(failing_grid: dict) -> None:
    other = {
        "program": "train.py",
        "method": "grid",
        "parameters": {"pruning.rate": {"values": [0.25]}},
        "command": COMMAND,
    }
    process = run_sweep(other, failing_grid["dir"], 1)
    assert process.returncode == 2
    assert "--dir" in process.stderr


def test_missing_args_macro_fails_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parameter_file = tmp_path / "config-run.yaml"
    write_parameter_file(parameter_file, {"optimizer.lr": 1e-05, "pruning.rate": 0.5})
    run_dir = tmp_path / "run"
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(parameter_file))
    process = run_train(run_dir, *TINY, "logger.mode=offline")

    assert process.returncode == 2
    assert "never reached Hydra" in process.stderr
    assert "optimizer.lr" in process.stderr
    assert "pruning.rate" in process.stderr
    assert not (run_dir / "wandb").exists()
