"""``lt-sweep run``: run a W&B sweep file locally, with offline W&B runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lt_sweeps.config import ConfigError

DEFAULT_SWEEPS_DIR = Path("outputs") / "sweeps"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run",
        help="run a W&B sweep file locally, without a W&B server",
        description=(
            "Run the trials of a W&B sweep file as offline W&B runs, with W&B's own search engine "
            "choosing each next configuration. Run it from the folder that contains the sweep's program. "
            "Arguments after -- are Hydra overrides added to every trial."
        ),
    )
    add_run_options(parser)
    parser.add_argument("sweep_file", type=Path, help="sweep file, for example sweeps/bayes_search.yaml")
    # argparse subcommands drop "--", so the options after the file and the Hydra
    # overrides are parsed again by run_sweep.
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="[--count N] [--agents K] [--dir DIR] [-- Hydra overrides]")
    parser.set_defaults(handler=run_sweep)


def add_run_options(parser: argparse.ArgumentParser, defaults: argparse.Namespace | None = None) -> None:
    """Add the options of ``lt-sweep run`` to ``parser``, with defaults taken from ``defaults``."""
    parser.add_argument(
        "--count",
        type=int,
        default=getattr(defaults, "count", None),
        help="number of trials to start in this invocation (required: without it the command "
        "exits with an error and starts nothing); a grid stops early when it has no configuration left",
    )
    parser.add_argument(
        "--agents",
        type=int,
        default=getattr(defaults, "agents", 1),
        help="trials in flight at once; each gets its own GPU where GPUs exist",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=getattr(defaults, "dir", None),
        help="sweep folder with the state file and the trials (default: outputs/sweeps/<sweep file name>); "
        "running again with the same folder continues the sweep",
    )


def run_sweep(arguments: argparse.Namespace) -> int:
    """Run the sweep; print the ranked trials and the ``wandb sync`` command.

    Returns 0, or 1 when a trial of this invocation failed; then the last line on
    stderr counts the failed trials and names their logs.
    """
    from lt_sweeps.sweeps.runner import LocalSweep

    rest_parser = argparse.ArgumentParser(prog="lt-sweep run SWEEP_FILE")
    add_run_options(rest_parser, arguments)
    rest_parser.add_argument("overrides", nargs="*", help="Hydra overrides for every trial, after --")
    rest = rest_parser.parse_args(arguments.rest)
    arguments = argparse.Namespace(**{**vars(arguments), **vars(rest)})

    if arguments.count is None:
        raise ConfigError("--count is missing: give the number of trials to run, for example --count 10")
    if arguments.count < 1:
        raise ConfigError(f"--count {arguments.count} is invalid: use 1 or more")

    sweep_dir = arguments.dir or DEFAULT_SWEEPS_DIR / arguments.sweep_file.stem
    sweep = LocalSweep(arguments.sweep_file, sweep_dir, list(arguments.overrides), arguments.agents)
    launched = sweep.run(arguments.count)

    print(sweep.results_table())
    print(f"\nsweep folder: {sweep_dir}")
    print(f"upload the runs with: {sweep.sync_command()}")

    if sweep.failed_trials:
        logs = ", ".join(str(Path(trial.directory) / "trial.log") for trial in sweep.failed_trials)
        print(f"error: {len(sweep.failed_trials)} of {launched} trials failed; their output is in {logs}", file=sys.stderr)
        return 1
    return 0
