"""Invariants of pruned training, checked inside real Lightning training steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lt_sweeps.imp import LotteryExperiment

from conftest import TINY_OVERRIDES, compose_config


class InvariantProbe(pl.Callback):
    """Record violations of the pruning invariants at each round's start and after each step.

    It runs before the mask callback, so it checks each step's weights as the optimizer
    left them, before they are masked again.
    """

    def __init__(self) -> None:
        self.experiment: LotteryExperiment | None = None
        self.rounds_started = 0
        self.start_mismatches: list[str] = []
        self.start_optimizer_state_sizes: list[int] = []
        self.steps_checked = 0
        self.revived_weights: list[str] = []
        self.momentum_of_pruned: list[str] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        experiment = self.experiment
        self.rounds_started += 1
        self.start_optimizer_state_sizes.append(len(trainer.optimizers[0].state))
        for name, parameter in experiment.parameters.items():
            mask = experiment.masks[name]
            expected = experiment.init_state[name] * mask
            if not torch.equal(parameter.detach(), expected):
                self.start_mismatches.append(f"round {self.rounds_started - 1}: {name}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        experiment = self.experiment
        optimizer = trainer.optimizers[0]
        self.steps_checked += 1
        for name, parameter in experiment.parameters.items():
            pruned = ~experiment.masks[name]
            if bool((parameter.detach()[pruned] != 0).any()):
                self.revived_weights.append(f"step {trainer.global_step}: {name}")

            state = optimizer.state.get(parameter, {})
            for buffer_name in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                buffer = state.get(buffer_name)
                if buffer is not None and bool((buffer[pruned] != 0).any()):
                    self.momentum_of_pruned.append(f"step {trainer.global_step}: {name}.{buffer_name}")


def run_probed(tmp_path: Path, *overrides: str) -> InvariantProbe:
    cfg = compose_config(*TINY_OVERRIDES, *overrides)
    probe = InvariantProbe()
    experiment = LotteryExperiment(cfg, tmp_path, callbacks=[probe])
    probe.experiment = experiment
    experiment.run()
    return probe


OPTIMIZERS = {
    "adam": ["optimizer=adam"],
    "adam-weight-decay": ["optimizer=adam", "optimizer.weight_decay=1e-3"],
    "sgd-momentum": ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=5e-4"],
    "sgd-nesterov": ["optimizer=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true"],
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_pruned_weights_stay_zero(tmp_path: Path, optimizer: str) -> None:
    probe = run_probed(tmp_path, *OPTIMIZERS[optimizer], "pruning.rounds=3", "pruning.rate=0.5")

    assert probe.steps_checked > 20
    assert probe.revived_weights == []
    assert probe.momentum_of_pruned == []


def test_rewind_restores_initial_survivors(tmp_path: Path) -> None:
    probe = run_probed(tmp_path, "optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=5e-4", "pruning.rounds=3")

    assert probe.rounds_started == 3
    assert probe.start_mismatches == []


def test_rewind_starts_fresh_optimizer(tmp_path: Path) -> None:
    probe = run_probed(tmp_path, "optimizer=sgd", "optimizer.momentum=0.9", "optimizer.weight_decay=5e-4", "pruning.rounds=3")

    assert probe.start_optimizer_state_sizes == [0, 0, 0]


def test_sgd_ten_steps_after_rewind(tmp_path: Path) -> None:
    """After a rewind, ten SGD steps with momentum and weight decay leave pruned weights at zero."""
    probe = run_probed(
        tmp_path,
        "optimizer=sgd",
        "optimizer.momentum=0.9",
        "optimizer.weight_decay=5e-4",
        "pruning.rounds=2",
        "data.batch_size=110",  # 1,100 training examples: ten steps a round
    )

    assert probe.steps_checked == 20
    assert probe.revived_weights == []


def test_same_seed_same_masks(tmp_path: Path) -> None:
    cfg = compose_config(*TINY_OVERRIDES, "pruning.rounds=3", "seed=3")
    first = LotteryExperiment(cfg, tmp_path / "first")
    first.run()
    second = LotteryExperiment(cfg, tmp_path / "second")
    second.run()

    for name in first.masks:
        assert torch.equal(first.masks[name], second.masks[name]), name


def test_reinit_control_keeps_ticket_sparsity(tmp_path: Path) -> None:
    cfg = compose_config(*TINY_OVERRIDES, "pruning.rounds=2", "pruning.control=reinit")
    results = LotteryExperiment(cfg, tmp_path).run()

    assert set(results[1].controls) == {"reinit"}
    assert 0.0 <= results[1].controls["reinit"] <= 1.0
