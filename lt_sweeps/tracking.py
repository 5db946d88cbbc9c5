"""Every call into Weights & Biases (W&B) that the experiment makes.

With ``logger.mode=disabled`` wandb returns a run whose methods do nothing, so callers
never branch on the mode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import wandb
import yaml
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger

from lt_sweeps.config import ConfigError, to_plain_dict
from lt_sweeps.sweeps import trial as sweep_trial

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"

# wandb still accepts these older names for WANDB_MODE.
MODE_ALIASES = {"dryrun": "offline", "run": "online"}

# Path of the sweep file whose ``metric`` the run's summary follows, set by sweep runners.
SWEEP_FILE_VARIABLE = "LT_SWEEPS_SWEEP_FILE"


def has_credentials() -> bool:
    """Return whether W&B credentials exist, without prompting or using the network.

    Looks where ``wandb login`` stores them: WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE,
    or a netrc entry for the host of WANDB_BASE_URL.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True

    host = urlsplit(os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)).hostname
    netrc_path = os.environ.get("NETRC", str(Path.home() / ".netrc"))
    try:
        entry = netrc.netrc(netrc_path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return entry is not None and bool(entry[2])


def resolve_mode(mode: str | None) -> str:
    """Return the W&B mode to use: ``logger.mode``, else WANDB_MODE, else by credentials."""
    if mode is not None:
        return mode

    from_environment = os.environ.get("WANDB_MODE")
    if from_environment:
        return MODE_ALIASES.get(from_environment, from_environment)

    return "online" if has_credentials() else "offline"


def check_online_credentials(mode: str | None) -> None:
    """Raise ConfigError when online mode is requested on a machine without W&B credentials.

    Without this check wandb.init would prompt for an API key on a terminal.
    """
    if resolve_mode(mode) == "online" and not has_credentials():
        raise ConfigError(
            "logger.mode=online needs W&B credentials: run `wandb login` or set WANDB_API_KEY, "
            "or use logger.mode=offline"
        )


def config_digest(cfg: DictConfig) -> str:
    """Return a short SHA-256 digest of the resolved config, without the logger group.

    Two runs with the same digest trained the same experiment; where they were logged
    does not count.
    """
    plain = to_plain_dict(cfg)
    plain.pop("logger", None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def start_run(cfg: DictConfig, run_dir: Path) -> Any:
    """Start the experiment's W&B run in ``run_dir`` with the resolved config.

    When online mode cannot reach the server within ``logger.init_timeout`` seconds,
    the run falls back to offline mode with a warning, so no result is lost.

    Step-level keys chart against ``trainer/global_step`` and round-level keys against
    ``round``.
    """
    mode = resolve_mode(cfg.logger.mode)

    # In a W&B sweep the agent sets the project and entity, and wandb warns about others.
    in_wandb_sweep = bool(os.environ.get("WANDB_SWEEP_ID"))
    init_arguments = dict(
        project=None if in_wandb_sweep else cfg.logger.project,
        entity=None if in_wandb_sweep else cfg.logger.entity,
        group=cfg.logger.group or sweep_trial.default_group(),
        name=cfg.logger.name,
        tags=list(cfg.logger.tags),
        config=to_plain_dict(cfg),
        dir=str(run_dir),
        settings=wandb.Settings(init_timeout=cfg.logger.init_timeout),
    )
    try:
        run = wandb.init(mode=mode, **init_arguments)
    except wandb.errors.CommError as error:
        if mode != "online":
            raise
        # Results matter more than live charts: keep the run on disk for `wandb sync`.
        first_line = str(error).splitlines()[0]
        log.warning("W&B server not reachable (%s): logging offline instead", first_line)
        mode = "offline"
        run = wandb.init(mode=mode, **init_arguments)
    log.info("W&B run %s started in %s mode", run.id, mode)

    run.define_metric("trainer/global_step")
    run.define_metric("train/*", step_metric="trainer/global_step")
    run.define_metric("val/*", step_metric="trainer/global_step")
    run.define_metric("round")
    for pattern in ("ticket/*", "sparsity/*", "control/*"):
        run.define_metric(pattern, step_metric="round")
    define_summaries(run, sweep_metric(run))
    return run


def sweep_metric(run: Any) -> dict[str, str] | None:
    """Return the ``metric`` section (name, goal) of the sweep that started ``run``, or None.

    Reads the sweep file named by the LT_SWEEPS_SWEEP_FILE environment variable, else,
    for an online run started by ``wandb agent``, the sweep's config on the W&B server.
    """
    sweep_file = os.environ.get(SWEEP_FILE_VARIABLE)
    if sweep_file:
        try:
            metric = yaml.safe_load(Path(sweep_file).read_text(encoding="utf-8")).get("metric")
        except (OSError, AttributeError, yaml.YAMLError) as error:
            log.warning("cannot read the sweep metric from %s=%s: %s", SWEEP_FILE_VARIABLE, sweep_file, error)
            return None
        return metric if isinstance(metric, dict) and metric.get("name") else None

    sweep_id = getattr(run, "sweep_id", None)
    if not sweep_id or run.settings.mode != "online":
        return None

    # NOTE: needs a W&B server, so no test here runs this path.
    try:
        metric = wandb.Api().sweep(f"{run.entity}/{run.project}/{sweep_id}").config.get("metric")
    except (wandb.errors.CommError, ValueError) as error:
        log.warning("cannot read the metric of sweep %s: %s", sweep_id, error)
        return None
    return metric if isinstance(metric, dict) and metric.get("name") else None


def define_summaries(run: Any, metric: dict[str, str] | None) -> None:
    """Make the summaries of ``val/acc`` and ``train/loss`` their best values, and the sweep metric's best for its goal.

    With a sweep ``metric`` of goal ``maximize`` its summary is the maximum over the
    run's history; with ``minimize`` the minimum.
    """
    run.define_metric("val/acc", step_metric="trainer/global_step", summary="max")
    run.define_metric("train/loss", step_metric="trainer/global_step", summary="min")
    if metric is None:
        return

    goal = metric.get("goal", "minimize")
    summary = "max" if goal == "maximize" else "min"
    step_metric = "trainer/global_step" if metric["name"].startswith(("train/", "val/")) else "round"
    run.define_metric(metric["name"], step_metric=step_metric, summary=summary)


def finish_run(run: Any, exit_code: int) -> None:
    """Finish the run; for an offline run, log its folder and the command that uploads it."""
    offline = run.settings.mode == "offline"
    sync_dir = run.settings.sync_dir
    run.finish(exit_code=exit_code)

    if offline:
        log.info("W&B run saved offline in %s", sync_dir)
        log.info("upload it with: wandb sync %s", sync_dir)


class RoundStepLogger(WandbLogger):
    """Lightning logger that writes to an existing W&B run across several ``fit`` calls.

    Each round has a fresh Trainer whose ``global_step`` starts at 0, so the logger adds
    ``step_offset``, the steps of earlier rounds, to keep ``trainer/global_step``
    increasing for the whole experiment. Lightning passes the 0-based index of the last
    optimizer step, so the logger adds 1 to log the number of steps taken, the unit of
    ``ticket/early_stop_step`` and of the round rows. Lightning's own ``epoch`` key is
    dropped, so the run contains only the project's metric keys.
    """

    def __init__(self, run: Any) -> None:
        super().__init__(experiment=run)
        self.step_offset = 0

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        values = {key: value for key, value in metrics.items() if key != "epoch"}
        if not values:
            return
        steps_taken = 0 if step is None else step + 1
        self.experiment.log({**values, "trainer/global_step": self.step_offset + steps_taken})

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        # The run already has the resolved Hydra config from wandb.init.
        return


def log_round(run: Any, values: Mapping[str, Any]) -> None:
    """Log one history row of round-level values."""
    run.log(dict(values))


def log_file_artifact(
    run: Any, path: Path, name: str, kind: str, aliases: list[str], metadata: dict, entry_name: str
) -> None:
    """Log ``path`` as ``entry_name`` in a new version of the artifact ``name`` of type ``kind``."""
    artifact = wandb.Artifact(name, type=kind, metadata=metadata)
    artifact.add_file(str(path), name=entry_name)
    run.log_artifact(artifact, aliases=aliases)
