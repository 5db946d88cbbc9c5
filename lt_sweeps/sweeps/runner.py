"""Local sweep runner: a W&B sweep without a W&B server.

W&B's open-source search engine (the ``sweeps`` package) suggests each next trial. The
trial runs the command line that ``wandb agent`` would run, as an offline W&B run. Its
results go back to the engine, so bayes search and hyperband stopping take them into
account.
Everything lives in the sweep's folder::

    sweep-state.json                      trials, their values, states and results
    wandb/sweep-<id>/config-<run id>.yaml each trial's parameter file, as the agent writes it
    trial-<k>-<run id>/                   the trial's Hydra run directory and trial.log

NOTE: differences from ``wandb agent``. The trial's run is not attached to a W&B sweep
(WANDB_SWEEP_ID is unset, so ``wandb sync`` uploads plain runs grouped as
``sweep-<local id>``), ``hydra.run.dir`` and the extra overrides follow the agent's
arguments, and ``python`` on the trial's PATH is the runner's interpreter. The sweep's
values still reach the run config under the sweep's names, through the same parameter
file that wandb.init reads in an agent's run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from wandb.sdk.lib.runid import generate_id

from lt_sweeps.config import ConfigError
from lt_sweeps.storage import save_json
from lt_sweeps.sweeps.agent_command import expand_command, write_parameter_file
from lt_sweeps.sweeps.engine import RunState, SweepConfig, SweepRun, next_run, stop_runs
from lt_sweeps.sweeps.sweep_file import load_sweep_file, validate_sweep
from lt_sweeps.sweeps.trial import LOCAL_SWEEP_ID_VARIABLE, STOP_FILE_NAME

log = logging.getLogger(__name__)

STATE_FILE_NAME = "sweep-state.json"
POLL_SECONDS = 0.5

# Trial states, as W&B names run states.
RUNNING, FINISHED, FAILED, CRASHED = "running", "finished", "failed", "crashed"


@dataclass
class Trial:
    """One trial of a local sweep: its values, its process state and its results."""

    number: int
    run_id: str
    parameters: dict[str, Any]
    directory: str
    state: str = RUNNING
    stopped: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    # Finished trials with a metric value that the engine saw when it suggested this one.
    results_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def sweep_run(self) -> SweepRun:
        """Return the trial as the SweepRun that W&B's engine takes as input."""
        state = RunState.running if self.state == RUNNING else RunState(self.state)
        return SweepRun(
            name=self.run_id,
            state=state,
            config={name: {"value": value} for name, value in self.parameters.items()},
            history=self.history,
            summary_metrics=self.summary,
            stopped=self.stopped,
            exitcode=self.exit_code,
        )


@dataclass
class RunningTrial:
    trial: Trial
    process: subprocess.Popen
    slot: int
    started: float
    # 1 for the first trial that this invocation started, 2 for the next, ...
    launch_index: int = 0


class LocalSweep:
    """A sweep file run by local processes, resumable from the state file in ``sweep_dir``."""

    def __init__(self, sweep_file: Path, sweep_dir: Path, overrides: list[str], agents: int = 1) -> None:
        """Load and validate the sweep file and any earlier state of the same sweep.

        Raises:
            ConfigError: on an invalid sweep file, an unknown program, a number of agents
                below 1, or a state file of a different sweep in ``sweep_dir``.
        """
        if agents < 1:
            raise ConfigError(f"--agents {agents} is invalid: use 1 or more")

        self.sweep_text = sweep_file.read_text() if sweep_file.is_file() else ""
        raw_sweep = load_sweep_file(sweep_file)
        self.program = Path(str(raw_sweep.get("program", "")))
        if raw_sweep.get("program") and not self.program.is_file():
            raise ConfigError(
                f"program {self.program} of {sweep_file} not found in {Path.cwd()}: run lt-sweep from "
                "the folder that contains it, as wandb agent would"
            )

        self.config: SweepConfig = validate_sweep(raw_sweep, str(sweep_file), self.program.parent / "conf", overrides)
        _check_overrides_leave_parameters(overrides, self.config)
        self.sweep_file = sweep_file
        self.sweep_dir = sweep_dir
        self.overrides = list(overrides)
        self.agents = agents
        self.metric = self.config.get("metric")
        self.trials: list[Trial] = []
        # Trials of this invocation that ended with a non-zero exit code.
        self.failed_trials: list[Trial] = []
        self.sweep_id = generate_id()
        self._load_state()

    @property
    def state_path(self) -> Path:
        return self.sweep_dir / STATE_FILE_NAME

    def run(self, count: int) -> int:
        """Run up to ``count`` new trials, ``agents`` at a time; return the number run.

        Stops early when the search has no next configuration (a finished grid). A
        failed trial does not stop the sweep; :attr:`failed_trials` lists it afterwards.
        """
        gpu_ids = visible_gpu_ids()
        running: list[RunningTrial] = []
        launched = 0
        exhausted = False

        while True:
            for item in [item for item in running if item.process.poll() is not None]:
                running.remove(item)
                self._record_finished(item, count)

            if self.config.get("early_terminate"):
                self._stop_trials_hyperband_rejects(running)

            while not exhausted and launched < count and len(running) < self.agents:
                free_slot = min(set(range(self.agents)) - {item.slot for item in running})
                started = self._start_next(free_slot, gpu_ids)
                if started is None:
                    exhausted = True
                    log.info("the %s search has no further configuration", self.config["method"])
                    break
                launched += 1
                started.launch_index = launched
                running.append(started)
                log.info(
                    "trial %d started (%d of %d in this invocation): %s",
                    started.trial.number,
                    launched,
                    count,
                    format_parameters(started.trial.parameters),
                )

            if not running:
                break
            time.sleep(POLL_SECONDS)

        return launched

    def _start_next(self, slot: int, gpu_ids: list[str]) -> RunningTrial | None:
        engine_runs = [trial.sweep_run() for trial in self.trials if trial.state != CRASHED]
        suggestion = next_run(self.config, engine_runs)
        if suggestion is None:
            return None

        parameters = {name: plain_value(entry["value"]) for name, entry in suggestion.config.items()}
        run_id = generate_id()
        number = len(self.trials) + 1
        trial_dir = self.sweep_dir / f"trial-{number:03d}-{run_id}"
        trial = Trial(
            number=number,
            run_id=run_id,
            parameters=parameters,
            directory=str(trial_dir),
            results_seen=sum(1 for run in engine_runs if self._metric_value(run.summary_metrics) is not None),
        )
        self.trials.append(trial)
        self._save_state()

        agent_files = self.sweep_dir / "wandb" / f"sweep-{self.sweep_id}"
        parameter_file = agent_files / f"config-{run_id}.yaml"
        write_parameter_file(parameter_file, parameters)
        command = expand_command(
            self.config.get("command"), str(self.program), parameters, agent_files / f"config-{run_id}.json"
        )
        command += [*self.overrides, f"hydra.run.dir={trial_dir.resolve()}"]

        environment = dict(os.environ)
        environment.update(
            {
                "WANDB_SWEEP_PARAM_PATH": str(parameter_file.resolve()),
                "WANDB_RUN_ID": run_id,
                "WANDB_MODE": "offline",
                LOCAL_SWEEP_ID_VARIABLE: self.sweep_id,
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")]),
            }
        )
        if gpu_ids:
            environment["CUDA_VISIBLE_DEVICES"] = gpu_ids[slot % len(gpu_ids)]

        trial_dir.mkdir(parents=True, exist_ok=True)
        with open(trial_dir / "trial.log", "w") as output:
            process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
        log.debug("trial %d runs: %s", number, " ".join(command))
        return RunningTrial(trial, process, slot, time.monotonic())

    def _record_finished(self, item: RunningTrial, count: int) -> None:
        trial = item.trial
        trial.exit_code = item.process.returncode
        trial.seconds = round(time.monotonic() - item.started, 1)
        trial.stopped = (Path(trial.directory) / STOP_FILE_NAME).exists()
        trial.state = FINISHED if trial.exit_code == 0 else FAILED
        trial.history, trial.summary = read_trial_results(Path(trial.directory))
        self._save_state()

        if trial.state == FAILED:
            self.failed_trials.append(trial)
            log.warning(
                "trial %d (%d of %d in this invocation, run %s) failed with exit code %s; its output is in %s",
                trial.number,
                item.launch_index,
                count,
                trial.run_id,
                trial.exit_code,
                Path(trial.directory) / "trial.log",
            )
            return

        value = self._metric_value(trial.summary)
        best = self.best_trial()
        ending = "stopped" if trial.stopped else "finished"
        progress = (
            f"trial {trial.number} ({item.launch_index} of {count} in this invocation, run {trial.run_id}) "
            f"{ending} in {trial.seconds:.0f} s"
        )
        if value is not None and best is not None:
            name = self.metric["name"]
            progress += f": {name}={value:.4g}, best so far {self._metric_value(best.summary):.4g} (trial {best.number})"
        log.info("%s", progress)

    def _stop_trials_hyperband_rejects(self, running: list[RunningTrial]) -> None:
        for item in running:
            item.trial.history, _ = read_trial_results(Path(item.trial.directory))

        engine_runs = [trial.sweep_run() for trial in self.trials if trial.state != CRASHED]
        for run in stop_runs(self.config, engine_runs):
            stop_file = Path(next(t.directory for t in self.trials if t.run_id == run.name)) / STOP_FILE_NAME
            if not stop_file.exists():
                stop_file.touch()
                log.info("hyperband stops run %s after its current round", run.name)

    def _metric_value(self, summary: dict[str, Any] | None) -> float | None:
        if not self.metric or not summary:
            return None
        value = summary.get(self.metric["name"])
        return value if isinstance(value, (int, float)) else None

    def best_trial(self) -> Trial | None:
        """Return the finished trial with the best metric value, or None."""
        ranked = self.ranked_trials()
        if ranked and self._metric_value(ranked[0].summary) is not None:
            return ranked[0]
        return None

    def ranked_trials(self) -> list[Trial]:
        """Return the trials ranked by the sweep metric, best first; trials without a value last.

        Trials with equal values keep their order, so the earlier trial ranks first.
        """
        maximize = bool(self.metric) and self.metric.get("goal", "minimize") == "maximize"
        with_value = [trial for trial in self.trials if self._metric_value(trial.summary) is not None]
        without_value = [trial for trial in self.trials if self._metric_value(trial.summary) is None]
        with_value.sort(key=lambda trial: self._metric_value(trial.summary), reverse=maximize)
        return with_value + without_value

    def results_table(self) -> str:
        """Return a text table of every trial, ranked by the sweep metric."""
        metric_name = self.metric["name"] if self.metric else "metric"
        rows = [("rank", "trial", "run", "state", metric_name, "parameters")]
        for rank, trial in enumerate(self.ranked_trials(), start=1):
            value = self._metric_value(trial.summary)
            state = "stopped" if trial.stopped else trial.state
            metric_text = "-" if value is None else f"{value:.4f}"
            rows.append((str(rank), str(trial.number), trial.run_id, state, metric_text, format_parameters(trial.parameters)))

        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
        return "\n".join(lines)

    def sync_command(self) -> str:
        """Return the ``wandb sync`` command that uploads every trial's offline run."""
        return f"wandb sync {self.sweep_dir}/trial-*/wandb/offline-run-*"

    def _load_state(self) -> None:
        if not self.state_path.exists():
            return

        state = json.loads(self.state_path.read_text())
        if state["sweep_file_text"] != self.sweep_text or state["overrides"] != self.overrides:
            raise ConfigError(
                f"{self.sweep_dir} contains a sweep with another sweep file or other overrides: "
                "pass --dir with a new folder to start a new sweep"
            )

        self.sweep_id = state["sweep_id"]
        self.trials = [Trial(**record) for record in state["trials"]]
        for trial in self.trials:
            if trial.state == RUNNING:
                trial.state = CRASHED
        log.info("resuming sweep %s in %s: %d earlier trials", self.sweep_id, self.sweep_dir, len(self.trials))

    def _save_state(self) -> None:
        state = {
            "sweep_id": self.sweep_id,
            "sweep_file": str(self.sweep_file),
            "sweep_file_text": self.sweep_text,
            "overrides": self.overrides,
            "trials": [asdict(trial) for trial in self.trials],
        }
        save_json(self.state_path, state)


def read_trial_results(trial_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the round rows a trial logged to W&B so far and its summary values.

    Reads ``rounds.json``, which the experiment rewrites after every round, and the
    trial's ``.hydra/config.yaml``; an offline run cannot be read while it is written.
    """
    from lt_sweeps.imp import RoundResult, min_winning_remaining

    rounds_path = trial_dir / "rounds.json"
    if not rounds_path.exists():
        return [], {}

    results = [RoundResult(**record) for record in json.loads(rounds_path.read_text())]
    history = [result.metrics() for result in results]
    summary: dict[str, Any] = {}
    for row in history:
        summary.update(row)

    config_path = trial_dir / ".hydra" / "config.yaml"
    if results and config_path.exists():
        tolerance = yaml.safe_load(config_path.read_text())["pruning"]["win_tolerance"]
        summary["ticket/dense_test_acc"] = results[0].test_acc
        summary["ticket/min_winning_remaining"] = min_winning_remaining(results, tolerance)
    return history, summary


def visible_gpu_ids() -> list[str]:
    """Return the ids of the GPUs trials may use: CUDA_VISIBLE_DEVICES, else every CUDA device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip()]

    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def plain_value(value: Any) -> Any:
    """Return ``value`` with numpy scalars as Python numbers, as the agent receives them in JSON."""
    if isinstance(value, list):
        return [plain_value(item) for item in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def format_parameters(parameters: dict[str, Any]) -> str:
    """Return ``name=value`` pairs as the agent writes them, separated by spaces."""
    return " ".join(f"{name}={value}" for name, value in parameters.items())


def _check_overrides_leave_parameters(overrides: list[str], config: SweepConfig) -> None:
    for override in overrides:
        name = override.partition("=")[0].lstrip("+~")
        if name in config["parameters"]:
            raise ConfigError(
                f"extra override {override} sets the sweep parameter {name}, which would hide the "
                "sweep's value: remove it or fix the value in the sweep file"
            )
