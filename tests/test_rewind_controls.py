"""Rewinding modes, pruning scope and schedule, and controls in real Lightning runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lt_sweeps.config import ConfigError, validate_config
from lt_sweeps.controls import build_control, is_winning
from lt_sweeps.imp import LotteryExperiment
from lt_sweeps.masks import keep_count, layer_sparsity
from lt_sweeps.storage import load_tensors

from conftest import TINY_OVERRIDES, compose_config, run_train
from test_pruning_scope import TinyConvNet

# 1,100 training examples in batches of 60: 19 optimizer steps an epoch.
STEPS_PER_EPOCH = 19
REWIND_STEP = 5


def clone_model_state(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.model.state_dict().items()}


class StateProbe(pl.Callback):
    """Record the network's state at the start and end of every ticket round.

    It also copies the state after ``capture_step`` batches of round 0, counted by
    itself rather than by the trainer's step counter.
    """

    def __init__(self, capture_step: int) -> None:
        self.capture_step = capture_step
        self.batches_seen = 0
        self.step_state: dict[str, torch.Tensor] | None = None
        self.start_states: list[dict[str, torch.Tensor]] = []
        self.end_states: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_states.append(clone_model_state(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if len(self.start_states) == 1:
            self.batches_seen += 1
            if self.batches_seen == self.capture_step:
                self.step_state = clone_model_state(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.end_states.append(clone_model_state(pl_module))


def run_experiment(tmp_path: Path, *overrides: str, callbacks=(), experiment_type=LotteryExperiment) -> LotteryExperiment:
    cfg = compose_config(*TINY_OVERRIDES, *overrides)
    validate_config(cfg)
    experiment = experiment_type(cfg, tmp_path, callbacks=list(callbacks))
    experiment.run()
    return experiment


def masked(state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor * masks[name] if name in masks else tensor for name, tensor in state.items()}


def assert_same_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(actual) == set(expected)
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


@pytest.fixture(scope="module")
def step_rewind(tmp_path_factory: pytest.TempPathFactory) -> tuple[LotteryExperiment, StateProbe, Path]:
    """Three rounds with late rewinding to step 5; round 1's masks kept for the checks."""
    output_dir = tmp_path_factory.mktemp("step-rewind")
    probe = StateProbe(REWIND_STEP)
    experiment = run_experiment(
        output_dir, "pruning.rewind=step", f"pruning.rewind_step={REWIND_STEP}", "pruning.rounds=3", callbacks=[probe]
    )
    return experiment, probe, output_dir


def test_step_rewind_restores_step_weights(step_rewind) -> None:
    experiment, probe, output_dir = step_rewind
    masks_round_1 = load_tensors(output_dir / "masks" / "round-1.safetensors")

    assert_same_state(probe.start_states[1], masked(probe.step_state, masks_round_1))
    assert_same_state(probe.start_states[2], masked(probe.step_state, experiment.masks))


def test_step_rewind_point_stored_once(step_rewind) -> None:
    experiment, probe, output_dir = step_rewind

    assert_same_state(load_tensors(output_dir / "init-weights.safetensors"), probe.step_state)
    assert not torch.equal(probe.step_state["fc1.weight"], experiment.init_state["fc1.weight"])


def test_init_rewind_restores_initialization(tmp_path: Path) -> None:
    probe = StateProbe(REWIND_STEP)
    experiment = run_experiment(tmp_path, "pruning.rewind=init", callbacks=[probe])

    assert_same_state(probe.start_states[1], masked(experiment.init_state, experiment.masks))
    assert_same_state(load_tensors(tmp_path / "init-weights.safetensors"), experiment.init_state)


def test_no_rewind_continues_trained_weights(tmp_path: Path) -> None:
    probe = StateProbe(REWIND_STEP)
    experiment = run_experiment(tmp_path, "pruning.rewind=none", callbacks=[probe])

    assert_same_state(probe.start_states[1], masked(probe.end_states[0], experiment.masks))


def test_rewind_step_beyond_dense_round(tmp_path: Path) -> None:
    cfg = compose_config(*TINY_OVERRIDES, "pruning.rewind=step", f"pruning.rewind_step={STEPS_PER_EPOCH + 1}")

    with pytest.raises(ConfigError) as raised:
        LotteryExperiment(cfg, tmp_path)

    assert f"pruning.rewind_step={STEPS_PER_EPOCH + 1} is invalid" in str(raised.value)
    assert f"only {STEPS_PER_EPOCH} optimizer steps" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_rewind_step_at_dense_round_end(tmp_path: Path) -> None:
    probe = StateProbe(STEPS_PER_EPOCH)
    run_experiment(tmp_path, "pruning.rewind=step", f"pruning.rewind_step={STEPS_PER_EPOCH}", callbacks=[probe])

    assert_same_state(load_tensors(tmp_path / "init-weights.safetensors"), probe.end_states[0])


@pytest.mark.slow
def test_train_rejects_late_rewind_step(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = run_train(run_dir, *TINY_OVERRIDES, "pruning.rewind=step", "pruning.rewind_step=1000")

    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "error: pruning.rewind_step=1000 is invalid: the dense round makes only 19 optimizer steps "
        "(1 epochs x 19 batches), use a step from 0 to 19"
    ]
    assert not (run_dir / "wandb").exists()


def test_global_scope_run(tmp_path: Path) -> None:
    experiment = run_experiment(tmp_path, "pruning.scope=global", "pruning.rate=0.5")
    masks = experiment.masks
    sparsity = experiment.results[1].layer_sparsity
    hidden_alive = int(masks["fc1.weight"].sum()) + int(masks["fc2.weight"].sum())

    assert hidden_alive == keep_count(64 * 32 + 32 * 16, 0.5, 1)
    assert sparsity["fc1"] != pytest.approx(sparsity["fc2"], abs=0.01)


def test_oneshot_prunes_in_one_round(tmp_path: Path) -> None:
    experiment = run_experiment(tmp_path, "pruning.schedule=oneshot", "pruning.rounds=4", "pruning.rate=0.5")
    sparsity = experiment.results[-1].layer_sparsity

    assert [result.round for result in experiment.results] == [0, 1]
    assert sparsity["fc1"] == pytest.approx(1 - 0.5**3, abs=1 / (64 * 32))
    assert sparsity["fc3"] == pytest.approx(1 - 0.75**3, abs=1 / (16 * 10))


class ConvExperiment(LotteryExperiment):
    """The IMP driver on a tiny conv network with BatchNorm, for tests only."""

    def _new_model(self) -> torch.nn.Module:
        return TinyConvNet(self.datamodule.num_classes)


@pytest.fixture(scope="module")
def conv_with_controls(tmp_path_factory: pytest.TempPathFactory) -> tuple[LotteryExperiment, Path]:
    output_dir = tmp_path_factory.mktemp("conv-controls")
    experiment = run_experiment(
        output_dir,
        "pruning.scope=global",
        "pruning.conv_rate=0.3",
        "pruning.rate=0.6",
        "pruning.control=[reinit,random_mask]",
        experiment_type=ConvExperiment,
    )
    return experiment, output_dir


@pytest.mark.parametrize("name", ["reinit", "random_mask"])
def test_control_matches_ticket_sparsity(conv_with_controls, name: str) -> None:
    experiment, _ = conv_with_controls
    _, _, masks = build_control(
        name, experiment._new_model, experiment.init_state, experiment.masks, False, seed=0, round_index=1
    )

    assert layer_sparsity(masks) == layer_sparsity(experiment.masks)


def test_random_mask_control_starts_at_rewind_point(conv_with_controls) -> None:
    experiment, _ = conv_with_controls
    control, _, masks = build_control(
        "random_mask", experiment._new_model, experiment.init_state, experiment.masks, False, seed=0, round_index=1
    )

    assert_same_state(control.state_dict(), masked(experiment.init_state, masks))
    assert not torch.equal(masks["fc1.weight"], experiment.masks["fc1.weight"])


def test_conv_layers_follow_conv_rate(conv_with_controls) -> None:
    experiment, _ = conv_with_controls
    masks = experiment.masks
    conv_alive = int(masks["conv1.weight"].sum()) + int(masks["conv2.weight"].sum())

    assert set(masks) == {"conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"}
    assert conv_alive == keep_count(8 * 9 + 8 * 8 * 9, 0.3, 1)
    assert int(masks["fc1.weight"].sum()) == keep_count(128 * 32, 0.6, 1)


def test_controls_and_verdict_recorded(conv_with_controls) -> None:
    experiment, output_dir = conv_with_controls
    rounds = json.loads((output_dir / "rounds.json").read_text())
    result = experiment.results[1]
    expected = is_winning(result.test_acc, experiment.results[0].test_acc, result.controls, 0.005)

    assert set(result.controls) == {"reinit", "random_mask"}
    assert result.is_winning == expected
    assert experiment.results[0].is_winning is False
    assert rounds[1]["is_winning"] == expected
    assert set(result.metrics()) >= {"control/reinit_test_acc", "control/random_mask_test_acc", "ticket/is_winning"}


@pytest.mark.parametrize(
    ("ticket", "dense", "controls", "expected"),
    [
        (0.95, 0.95, {"reinit": 0.90, "random_mask": 0.80}, True),
        (0.95, 0.97, {"reinit": 0.90}, False),
        (0.95, 0.953, {"reinit": 0.90}, True),
        (0.95, 0.95, {"reinit": 0.95}, False),
        (0.95, 0.95, {"reinit": 0.90, "random_mask": 0.96}, False),
        (0.95, 0.95, {}, True),
    ],
)
def test_is_winning(ticket: float, dense: float, controls: dict, expected: bool) -> None:
    assert is_winning(ticket, dense, controls, tolerance=0.005) is expected


def test_oneshot_needs_two_rounds() -> None:
    cfg = compose_config("pruning.schedule=oneshot", "pruning.rounds=1")

    with pytest.raises(ConfigError, match="pruning.rounds=1 is invalid with pruning.schedule=oneshot"):
        validate_config(cfg)


def test_conv_rate_on_mlp_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_config(*TINY_OVERRIDES, "pruning.conv_rate=0.1")

    with caplog.at_level("WARNING", logger="lt_sweeps.imp"):
        LotteryExperiment(cfg, tmp_path)

    assert "pruning.conv_rate=0.1 is ignored: model=mlp has no conv layers" in caplog.text
