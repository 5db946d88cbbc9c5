"""Iterative magnitude pruning (IMP) with rewinding: the lottery-ticket experiment.

Round 0 trains the dense network. Every later round prunes the trained weights by
magnitude, rewinds the survivors to their values at initialization, and trains again
with a fresh optimizer (Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019).
``pruning.rewind`` moves the rewind point (:mod:`lt_sweeps.rewind`), ``pruning.scope``
and ``pruning.schedule`` choose how masks shrink (:mod:`lt_sweeps.masks`), and
``pruning.control`` adds the controls that decide whether a ticket wins
(:mod:`lt_sweeps.controls`).

Everything a run writes lives in its output directory::

    init-weights.safetensors   the rewind point (the initialization with rewind=none)
    masks/round-<k>.safetensors
    rounds.json                one record per finished round
    ticket.safetensors         the last round's ticket (lt_sweeps.lineage.load_ticket)
    wandb/                     the W&B run
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from torch import nn

from lt_sweeps import charts, lineage, tracking
from lt_sweeps.config import control_names
from lt_sweeps.controls import build_control, is_winning
from lt_sweeps.data import InMemoryDataModule, build_datamodule
from lt_sweeps.masks import (
    Masks,
    full_masks,
    grouped_masks,
    kind_rates,
    layer_kinds,
    layer_sparsity,
    prunable_parameters,
    pruning_groups,
    remaining_fraction,
    times_pruned_at,
)
from lt_sweeps.models import build_model
from lt_sweeps.module import LotteryModule, evaluate_accuracy
from lt_sweeps.progress import RoundProgress
from lt_sweeps.pruning import MaskCallback
from lt_sweeps.rewind import RewindPointCallback, check_rewind_step
from lt_sweeps.storage import save_json, save_tensors
from lt_sweeps.sweeps.trial import stop_requested

log = logging.getLogger(__name__)

# pytorch-lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates, once
# per fit. The warning concerns Lightning's code, not this experiment.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

# Lightning loggers that repeat the same device report for every Trainer. After the
# first round they are raised to WARNING.
LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero")


@dataclass
class RoundResult:
    """Measurements of one IMP round. Accuracies are fractions in [0, 1]."""

    round: int
    remaining: float
    layer_sparsity: dict[str, float]
    test_acc: float
    best_val_acc: float
    early_stop_step: int
    steps: int
    controls: dict[str, float] = field(default_factory=dict)
    # The ticket beats every control and is within pruning.win_tolerance of dense.
    # Always False in round 0, whose dense network is no ticket.
    is_winning: bool = False

    def metrics(self) -> dict[str, Any]:
        """Return the round's W&B history row under the project's metric keys."""
        row: dict[str, Any] = {
            "round": self.round,
            "ticket/remaining": self.remaining,
            "ticket/sparsity": 1.0 - self.remaining,
            "ticket/test_acc": self.test_acc,
            "ticket/best_val_acc": self.best_val_acc,
            "ticket/early_stop_step": self.early_stop_step,
            "ticket/is_winning": self.is_winning,
        }
        row.update({f"sparsity/{layer}": value for layer, value in self.layer_sparsity.items()})
        row.update({f"control/{name}_test_acc": value for name, value in self.controls.items()})
        return row


@dataclass
class RoundTraining:
    """Early-stopping record of one training run: accuracies are fractions in [0, 1]."""

    test_acc: float
    best_val_acc: float
    early_stop_step: int
    steps: int


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a detached copy of ``model.state_dict()``."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def min_winning_remaining(results: list[RoundResult], tolerance: float) -> float:
    """Return the smallest ``remaining`` whose test accuracy is within ``tolerance`` of dense.

    Round 0 is dense and always qualifies, so the value is 1.0 when no pruned round does.
    """
    dense = results[0].test_acc
    winners = [result.remaining for result in results if result.test_acc >= dense - tolerance]
    return min(winners, default=1.0)


class LotteryExperiment:
    """One IMP experiment: data, network, masks and the W&B run, driven round by round."""

    def __init__(self, cfg: DictConfig, output_dir: Path, callbacks: Sequence[pl.Callback] = ()) -> None:
        """Load the data and build the network; ``callbacks`` join every ticket round's Trainer.

        The extra callbacks run before the mask callback in each hook, so they see the
        weights as the optimizer left them.

        Raises:
            ConfigError: when the data set cannot provide the requested splits, or
                ``pruning.rewind_step`` lies beyond the dense round.
        """
        self.cfg = cfg
        self.output_dir = output_dir
        self.callbacks = list(callbacks)

        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        self.datamodule: InMemoryDataModule = build_datamodule(cfg.data, cfg.seed)
        check_rewind_step(cfg.pruning, cfg.trainer.max_epochs, len(self.datamodule.train_dataloader()))
        self.model = self._new_model()
        self.parameters = prunable_parameters(self.model, cfg.pruning.prune_bias)
        self.init_state = clone_state(self.model)
        self.masks: Masks = full_masks(self.parameters)
        self.mask_source = lineage.load_start_masks(cfg, self.parameters, tracking.resolve_mode(cfg.logger.mode), output_dir)
        if self.mask_source is not None:
            self.masks = self.mask_source.masks
        self.charts = charts.RunCharts(self.model)
        self.callbacks.append(self.charts)

        # The state that survivors restart from. With rewind=step it is captured in round 0.
        # With rewind=none it stays None, and every round continues from trained weights.
        self.rewind_state = self.init_state if cfg.pruning.rewind == "init" else None

        pruning = cfg.pruning
        kinds = layer_kinds(self.model, list(self.parameters), self.model.output_layer)
        if pruning.conv_rate is not None and "conv" not in kinds.values():
            log.warning(
                "pruning.conv_rate=%s is ignored: model=%s has no conv layers", pruning.conv_rate, cfg.model.name
            )
        self.rates = kind_rates(kinds, pruning.rate, pruning.conv_rate, pruning.output_rate)
        self.groups = pruning_groups(kinds, self.rates, pruning.scope)

        # A one-shot run is dense round 0 and the one-shot ticket of round 1.
        self.rounds = 2 if pruning.schedule == "oneshot" else pruning.rounds
        self.results: list[RoundResult] = []

    def _new_model(self) -> nn.Module:
        return build_model(self.cfg.model, self.datamodule.input_shape, self.datamodule.num_classes)

    def run(self) -> list[RoundResult]:
        """Run every round, logging to a W&B run that is finished even when a round fails."""
        run = tracking.start_run(self.cfg, self.output_dir)
        logger = tracking.RoundStepLogger(run)
        progress = RoundProgress(self.rounds)
        try:
            lineage.declare_use(run, self.mask_source)
            if self.cfg.pruning.rewind != "step":
                self._save_init_weights(run)
            for round_index in range(self.rounds):
                if round_index > 0 and stop_requested(self.output_dir):
                    log.info("stopped after round %d: a sweep requested a stop", round_index - 1)
                    break
                self._run_round(round_index, run, logger)
                progress.update(self.results[-1])
            progress.close()
            self.charts.log_run(run, self.results, logger.step_offset)
            self._save_ticket(run)
            self._write_summary(run)
        except BaseException:
            progress.close()
            tracking.finish_run(run, exit_code=1)
            raise
        tracking.finish_run(run, exit_code=0)
        return self.results

    def _run_round(self, round_index: int, run: Any, logger: tracking.RoundStepLogger) -> None:
        pruning = self.cfg.pruning
        if round_index > 0:
            times_pruned = times_pruned_at(round_index, pruning.schedule, pruning.rounds)
            self.masks = grouped_masks(self.parameters, self.masks, self.groups, self.rates, times_pruned)
            if pruning.rewind != "none":
                self.model.load_state_dict(self.rewind_state)
            quiet_lightning_info()

        callbacks = list(self.callbacks)
        rewind_point = None
        if round_index == 0 and pruning.rewind == "step":
            rewind_point = RewindPointCallback(self.model, pruning.rewind_step)
            callbacks.append(rewind_point)

        training = self._train(self.model, self.parameters, self.masks, logger, callbacks)
        logger.step_offset += training.steps
        if rewind_point is not None:
            self.rewind_state = rewind_point.state
            self._save_init_weights(run)

        controls = {name: self._train_control(name, round_index) for name in control_names(pruning.control)}
        winning = False
        if round_index > 0:
            winning = is_winning(training.test_acc, self.results[0].test_acc, controls, pruning.win_tolerance)
        result = RoundResult(
            round=round_index,
            remaining=remaining_fraction(self.masks),
            layer_sparsity=layer_sparsity(self.masks),
            test_acc=training.test_acc,
            best_val_acc=training.best_val_acc,
            early_stop_step=training.early_stop_step,
            steps=training.steps,
            controls=controls,
            is_winning=winning,
        )
        self.results.append(result)

        tracking.log_round(run, {**result.metrics(), "trainer/global_step": logger.step_offset})
        self._save_mask(run, result)
        self.charts.log_round(run, self.masks, logger.step_offset)
        save_json(self.output_dir / "rounds.json", [asdict(item) for item in self.results])
        log.info(
            "round %d/%d: %.1f%% of weights remaining, test acc %.2f%% (best val acc %.2f%% at step %d)",
            round_index,
            self.rounds - 1,
            100 * result.remaining,
            100 * result.test_acc,
            100 * result.best_val_acc,
            result.early_stop_step,
        )
        if controls:
            verdict = "dense, no verdict"
            if round_index > 0:
                verdict = "ticket wins" if result.is_winning else "ticket does not win"
            log.info(
                "round %d controls: %s (%s)",
                round_index,
                ", ".join(f"{name} test acc {100 * value:.2f}%" for name, value in controls.items()),
                verdict,
            )

    def _train(
        self,
        model: nn.Module,
        parameters: dict[str, nn.Parameter],
        masks: Masks,
        logger: Any,
        callbacks: Sequence[pl.Callback] = (),
    ) -> RoundTraining:
        """Train ``model`` under ``masks`` with a fresh Trainer and optimizer.

        The model ends with its final trained weights, because the next pruning step
        ranks those. The test accuracy is measured with the weights of the best
        validation pass.
        """
        module = LotteryModule(model, self.cfg.optimizer, self.datamodule.num_classes)
        trainer = pl.Trainer(
            max_epochs=self.cfg.trainer.max_epochs,
            accelerator=self.cfg.trainer.accelerator,
            devices=self.cfg.trainer.devices,
            deterministic=self.cfg.trainer.deterministic,
            log_every_n_steps=self.cfg.trainer.log_every_n_steps,
            enable_progress_bar=self.cfg.trainer.enable_progress_bar,
            logger=logger,
            callbacks=[*callbacks, MaskCallback(parameters, masks)],
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(self.output_dir),
        )
        trainer.fit(module, datamodule=self.datamodule)

        final_state = clone_state(model)
        model.load_state_dict(module.best_state)
        test_acc = evaluate_accuracy(model, self.datamodule.test_dataloader())
        model.load_state_dict(final_state)
        return RoundTraining(test_acc, module.best_val_acc, module.best_step, trainer.global_step)

    def _train_control(self, name: str, round_index: int) -> float:
        """Train one control at the round's per-layer sparsity and return its test accuracy.

        The control is measured like the ticket: test accuracy at its best validation pass.
        """
        start_state = self.rewind_state if self.rewind_state is not None else self.init_state
        control, parameters, masks = build_control(
            name, self._new_model, start_state, self.masks, self.cfg.pruning.prune_bias, self.cfg.seed, round_index
        )
        return self._train(control, parameters, masks, logger=False).test_acc

    def _save_init_weights(self, run: Any) -> None:
        path = self.output_dir / "init-weights.safetensors"
        state = self.rewind_state if self.rewind_state is not None else self.init_state
        rewind = {"rewind": self.cfg.pruning.rewind, "rewind_step": str(self.cfg.pruning.rewind_step)}
        save_tensors(path, state, metadata=rewind)
        metadata = {"config_digest": tracking.config_digest(self.cfg), **rewind}
        tracking.log_file_artifact(
            run, path, f"init-weights-{run.id}", "init-weights", ["init"], metadata, "init-weights.safetensors"
        )

    def _save_mask(self, run: Any, result: RoundResult) -> None:
        path = self.output_dir / "masks" / f"round-{result.round}.safetensors"
        save_tensors(path, self.masks, metadata={"round": str(result.round)})
        metadata = {
            "round": result.round,
            "remaining": result.remaining,
            "layer_sparsity": result.layer_sparsity,
            "config_digest": tracking.config_digest(self.cfg),
            "data": self.cfg.data.name,
            "model": self.cfg.model.name,
        }
        tracking.log_file_artifact(
            run, path, f"mask-{run.id}", "mask", [f"round-{result.round}"], metadata, "mask.safetensors"
        )

    def _save_ticket(self, run: Any) -> None:
        trained = self.charts.best_state or clone_state(self.model)
        input_shape = (self.datamodule.num_features, self.datamodule.num_classes)
        digest = tracking.config_digest(self.cfg)
        lineage.log_ticket(
            run, self.cfg, self.output_dir, self.results[-1], trained, self.init_state, self.masks, input_shape, digest
        )

    def _write_summary(self, run: Any) -> None:
        run.summary["ticket/dense_test_acc"] = self.results[0].test_acc
        run.summary["ticket/min_winning_remaining"] = min_winning_remaining(
            self.results, self.cfg.pruning.win_tolerance
        )


def quiet_lightning_info() -> None:
    """Raise Lightning's per-Trainer device report to WARNING after it was shown once."""
    for name in LIGHTNING_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
