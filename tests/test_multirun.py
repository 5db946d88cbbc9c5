"""Hydra multirun: one finished W&B run per job, grouped by the multirun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, offline_run_dir, read_wandb_records, records_of_type

pytestmark = pytest.mark.slow

TINY = ["model.hidden=[32,16]", "trainer.max_epochs=1", "pruning.rounds=2", "logger.mode=offline"]

# Every invalid value is rejected before a job's W&B run starts, so no config can make
# a job fail inside training. This wrapper makes round 0 raise for jobs tagged "fail",
# then runs train.py as `python train.py` would.
FAILING_TRAIN = f"""
import runpy, sys
sys.path.insert(0, {str(ROOT)!r})
from lt_sweeps.imp import LotteryExperiment

run_round = LotteryExperiment._run_round

def failing_run_round(self, round_index, *arguments):
    if "fail" in self.cfg.logger.tags:
        raise RuntimeError("injected failure in round 0")
    return run_round(self, round_index, *arguments)

LotteryExperiment._run_round = failing_run_round
sys.argv = [{str(ROOT / "train.py")!r}, *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Four jobs; jobs 0 and 1 are tagged "fail", so they raise in round 0."""
    sweep_dir = tmp_path_factory.mktemp("multirun") / "multi"
    command = [sys.executable, "-c", FAILING_TRAIN, "-m", f"hydra.sweep.dir={sweep_dir}"]
    command += ["logger.tags=[fail],[pass]", "seed=0,1", *TINY]
    process = subprocess.run(command, capture_output=True, text=True, cwd=sweep_dir.parent, env=os.environ.copy(), timeout=300)

    runs = {}
    for job in range(4):
        records = read_wandb_records(offline_run_dir(sweep_dir / str(job)))
        runs[job] = {
            "run": records_of_type(records, "run")[0],
            "exit": records_of_type(records, "exit"),
        }
    return {"process": process, "runs": runs, "dir": sweep_dir}


def test_failed_job_fails_process(multirun: dict) -> None:
    assert multirun["process"].returncode != 0


def test_every_job_has_own_run(multirun: dict) -> None:
    run_ids = {job["run"]["run_id"] for job in multirun["runs"].values()}
    assert len(run_ids) == 4


def test_jobs_after_failure_finish(multirun: dict) -> None:
    for job in (2, 3):
        assert [record.get("exit_code", 0) for record in multirun["runs"][job]["exit"]] == [0], job


def test_failed_jobs_finish_their_runs(multirun: dict) -> None:
    for job in (0, 1):
        assert [record.get("exit_code") for record in multirun["runs"][job]["exit"]] == [1], job


def test_jobs_share_one_group(multirun: dict) -> None:
    groups = {job["run"]["run_group"] for job in multirun["runs"].values()}
    assert groups == {f"multirun-{multirun['dir'].parent.name}-multi"}


def test_finished_jobs_have_rounds(multirun: dict) -> None:
    for job in (2, 3):
        assert (multirun["dir"] / str(job) / "rounds.json").exists()
