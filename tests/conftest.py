"""Shared fixtures: real Hydra composition, real offline wandb, subprocess runs of train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lt_sweeps.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# Small enough for seconds per run on two CPU cores, large enough to prune and learn.
TINY_OVERRIDES = [
    "model.hidden=[32,16]",
    "trainer.max_epochs=1",
    "pruning.rounds=2",
    "logger.mode=disabled",
]


def isolate_wandb(patch: pytest.MonkeyPatch, home: Path) -> None:
    """Point wandb's settings, cache and staging folders into ``home`` and clear credentials."""
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        patch.setenv(variable, str(home / variable.lower()))
    patch.setenv("NETRC", str(home / "netrc"))
    for variable in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "HYDRA_FULL_ERROR"):
        patch.delenv(variable, raising=False)
    patch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def isolated_wandb(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep wandb's settings, cache and staging files out of the home directory, and offline."""
    isolate_wandb(monkeypatch, tmp_path_factory.mktemp("wandb-home"))


def compose_config(*overrides: str) -> DictConfig:
    """Compose ``conf/config.yaml`` with Hydra, as train.py does, without running a job."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_train(run_dir: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python train.py`` with ``overrides`` and its Hydra run directory at ``run_dir``."""
    command = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=run_dir.parent, env=os.environ.copy())


def offline_run_dir(hydra_run_dir: Path) -> Path:
    """Return the single W&B offline run folder under a Hydra run directory."""
    runs = sorted((hydra_run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline run in {hydra_run_dir}, found {runs}"
    return runs[0]


def read_wandb_records(run_dir: Path) -> list[dict]:
    """Read every record of an offline run with W&B's own reader, ``wandb leet inspect``."""
    wandb_cli = Path(sys.executable).with_name("wandb")
    output = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def records_of_type(records: list[dict], kind: str) -> list[dict]:
    return [record[kind] for record in records if record["type"] == kind]
