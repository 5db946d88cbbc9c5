"""Iterative magnitude pruning (IMP) with rewinding: the lottery-ticket experiment.

Round 0 trains the dense network. Every later round prunes the trained weights by
magnitude, rewinds the survivors to their values at initialization, and trains again
with a fresh optimizer (Frankle & Carbin, "The Lottery Ticket Hypothesis", ICLR 2019).

Everything a run writes lives in its output directory::

    init-weights.safetensors   the rewind point
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
from lt_sweeps.data import InMemoryDataModule, build_datamodule
from lt_sweeps.masks import (
    Masks,
    apply_masks,
    full_masks,
    layer_rates,
    layer_sparsity,
    layerwise_masks,
    prunable_parameters,
    remaining_fraction,
)
from lt_sweeps.models import build_model
from lt_sweeps.module import LotteryModule, evaluate_accuracy
from lt_sweeps.progress import RoundProgress
from lt_sweeps.pruning import MaskCallback
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

    def metrics(self) -> dict[str, Any]:
        """Return the round's W&B history row under the project's metric keys."""
        row: dict[str, Any] = {
            "round": self.round,
            "ticket/remaining": self.remaining,
            "ticket/sparsity": 1.0 - self.remaining,
            "ticket/test_acc": self.test_acc,
            "ticket/best_val_acc": self.best_val_acc,
            "ticket/early_stop_step": self.early_stop_step,
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
            ConfigError: when the data set cannot provide the requested splits.
        """
        self.cfg = cfg
        self.output_dir = output_dir
        self.callbacks = list(callbacks)

        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        self.datamodule: InMemoryDataModule = build_datamodule(cfg.data, cfg.seed)
        self.model = self._new_model()
        self.parameters = prunable_parameters(self.model, cfg.pruning.prune_bias)
        self.init_state = clone_state(self.model)
        self.masks: Masks = full_masks(self.parameters)
        self.mask_source = lineage.load_start_masks(cfg, self.parameters, tracking.resolve_mode(cfg.logger.mode), output_dir)
        if self.mask_source is not None:
            self.masks = self.mask_source.masks
        self.charts = charts.RunCharts(self.model)
        self.callbacks.append(self.charts)

        output_rate = cfg.pruning.output_rate
        if output_rate is None:
            output_rate = cfg.pruning.rate / 2
        self.rates = layer_rates(list(self.parameters), cfg.pruning.rate, output_rate, self.model.output_layer)
        self.results: list[RoundResult] = []

    def _new_model(self) -> nn.Module:
        return build_model(self.cfg.model, self.datamodule.input_shape, self.datamodule.num_classes)

    def run(self) -> list[RoundResult]:
        """Run every round, logging to a W&B run that is finished even when a round fails."""
        run = tracking.start_run(self.cfg, self.output_dir)
        logger = tracking.RoundStepLogger(run)
        try:
            lineage.declare_use(run, self.mask_source)
            self._save_init_weights(run)
            progress = RoundProgress(self.cfg.pruning.rounds)
            for round_index in range(self.cfg.pruning.rounds):
                if round_index > 0 and stop_requested(self.output_dir):
                    log.info("stopped after round %d: a sweep asked this run to stop", round_index - 1)
                    break
                self._run_round(round_index, run, logger)
                progress.update(self.results[-1])
            progress.close()
            self.charts.log_run(run, self.results, logger.step_offset)
            self._save_ticket(run)
            self._write_summary(run)
        except BaseException:
            tracking.finish_run(run, exit_code=1)
            raise
        tracking.finish_run(run, exit_code=0)
        return self.results

    def _run_round(self, round_index: int, run: Any, logger: tracking.RoundStepLogger) -> None:
        if round_index > 0:
            self.masks = layerwise_masks(self.parameters, self.masks, self.rates, round_index)
            self.model.load_state_dict(self.init_state)
            quiet_lightning_info()

        training = self._train(self.model, self.parameters, self.masks, logger, self.callbacks)
        logger.step_offset += training.steps

        controls = {name: self._train_control(name, round_index) for name in control_names(self.cfg.pruning.control)}
        result = RoundResult(
            round=round_index,
            remaining=remaining_fraction(self.masks),
            layer_sparsity=layer_sparsity(self.masks),
            test_acc=training.test_acc,
            best_val_acc=training.best_val_acc,
            early_stop_step=training.early_stop_step,
            steps=training.steps,
            controls=controls,
        )
        self.results.append(result)

        tracking.log_round(run, {**result.metrics(), "trainer/global_step": logger.step_offset})
        self._save_mask(run, result)
        self.charts.log_round(run, self.masks, logger.step_offset)
        save_json(self.output_dir / "rounds.json", [asdict(item) for item in self.results])
        log.info(
            "round %d/%d: %.1f%% of weights remaining, test acc %.2f%% (best val acc %.2f%% at step %d)",
            round_index,
            self.cfg.pruning.rounds - 1,
            100 * result.remaining,
            100 * result.test_acc,
            100 * result.best_val_acc,
            result.early_stop_step,
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
        """Train the ``reinit`` control: the round's mask on a fresh random initialization."""
        with torch.random.fork_rng():
            torch.manual_seed(self.cfg.seed + 1_000_003 * (round_index + 1))
            control = self._new_model()

        parameters = prunable_parameters(control, self.cfg.pruning.prune_bias)
        masks = {parameter: mask.clone() for parameter, mask in self.masks.items()}
        apply_masks(parameters, masks)
        return self._train(control, parameters, masks, logger=False).test_acc

    def _save_init_weights(self, run: Any) -> None:
        path = self.output_dir / "init-weights.safetensors"
        save_tensors(path, self.init_state)
        metadata = {"config_digest": tracking.config_digest(self.cfg)}
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
