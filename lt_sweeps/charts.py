"""W&B tables, charts and mask images built from the rounds of one experiment.

Everything here is built from :class:`lt_sweeps.imp.RoundResult` values and the masks,
so a run's workspace shows the lottery-ticket story without any set-up:

``charts/rounds``
    one table row per round: remaining weights, per-layer sparsity, test accuracy,
    early-stop step, every control's accuracy, the verdict when the run has one, and
    the mask artifact of the round.
``charts/accuracy_vs_remaining``
    test accuracy against the fraction of weights remaining, one line for the ticket
    and one per control.
``charts/val_acc_by_round``
    the validation accuracy of every round against the step within the round.
``charts/layer_sparsity`` and ``charts/layer_sparsity_by_round``
    the fraction pruned in each layer by round.
``masks/<parameter>``
    an image of each 2-D mask per round (white = alive), average-pooled to at most
    :data:`MASK_IMAGE_SIDE` pixels a side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import wandb
from torch.nn import functional as F

from lt_sweeps.masks import Masks

# Largest side of a logged mask image, in pixels: a 300x784 mask becomes 64x64, a 10x100 mask 10x64.
MASK_IMAGE_SIDE = 64

# RoundResult.metrics() key of the winning-ticket verdict, when the run computes one.
VERDICT_KEY = "ticket/is_winning"


def mask_alias(run_id: str, round_index: int) -> str:
    """Return the ``<name>:<alias>`` of a round's mask artifact, as ``pruning.mask_artifact`` takes it."""
    return f"mask-{run_id}:round-{round_index}"


def control_names_of(results: Sequence[Any]) -> list[str]:
    """Return every control name that appears in any round, in first-seen order."""
    names: list[str] = []
    for result in results:
        names.extend(name for name in result.controls if name not in names)
    return names


def layer_names_of(results: Sequence[Any]) -> list[str]:
    """Return every layer with a sparsity value in any round, in first-seen order."""
    names: list[str] = []
    for result in results:
        names.extend(name for name in result.layer_sparsity if name not in names)
    return names


def round_table_columns(results: Sequence[Any]) -> list[str]:
    """Return the column names of :func:`round_table_rows` for these rounds."""
    columns = ["round", "remaining"]
    columns += [f"sparsity/{layer}" for layer in layer_names_of(results)]
    columns += ["test_acc", "best_val_acc", "early_stop_step"]
    columns += [f"{name}_test_acc" for name in control_names_of(results)]
    if any(VERDICT_KEY in result.metrics() for result in results):
        columns.append("is_winning")
    columns.append("mask_artifact")
    return columns


def round_table_rows(results: Sequence[Any], run_id: str) -> list[list[Any]]:
    """Return one row per round in the order of :func:`round_table_columns`; absent values are None."""
    layers = layer_names_of(results)
    controls = control_names_of(results)
    with_verdict = any(VERDICT_KEY in result.metrics() for result in results)

    rows = []
    for result in results:
        row = [result.round, result.remaining]
        row += [result.layer_sparsity.get(layer) for layer in layers]
        row += [result.test_acc, result.best_val_acc, result.early_stop_step]
        row += [result.controls.get(name) for name in controls]
        if with_verdict:
            verdict = result.metrics().get(VERDICT_KEY)
            row.append(None if verdict is None else bool(verdict))
        row.append(mask_alias(run_id, result.round))
        rows.append(row)
    return rows


def accuracy_curves(results: Sequence[Any]) -> tuple[list[list[float]], list[list[float]], list[str]]:
    """Return (xs, ys, names) of test accuracy against remaining: the ticket, then each control.

    A control line skips the rounds where that control was not trained.
    """
    xs = [[result.remaining for result in results]]
    ys = [[result.test_acc for result in results]]
    names = ["ticket"]
    for control in control_names_of(results):
        trained = [result for result in results if control in result.controls]
        xs.append([result.remaining for result in trained])
        ys.append([result.controls[control] for result in trained])
        names.append(control)
    return xs, ys, names


def mask_image(mask: torch.Tensor, side: int = MASK_IMAGE_SIDE) -> np.ndarray:
    """Return a 2-D mask as a uint8 grey image (255 = alive), average-pooled to at most ``side`` pixels a side.

    Each pixel is the fraction of alive weights in the block it covers. Rows are the
    layer's output units and columns its inputs.
    """
    alive = mask.detach().to(torch.float32).cpu()
    height = min(side, alive.shape[0])
    width = min(side, alive.shape[1])
    pooled = F.adaptive_avg_pool2d(alive[None, None], (height, width))[0, 0]
    return (pooled.numpy() * 255).round().astype(np.uint8)


class RunCharts(pl.Callback):
    """Collect what the charts need during training and log the charts to the run.

    Join it to every ticket round's Trainer. It records each validation pass of a round
    as (step within the round, ``val/acc``) and keeps the best-validation weights of
    the latest round in :attr:`best_state`. Given ``model``, it ignores the fits of any
    other network, such as a control's.
    """

    def __init__(self, model: torch.nn.Module | None = None) -> None:
        self.model = model
        self.val_curves: list[list[tuple[int, float]]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.recording = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.recording = self.model is None or getattr(pl_module, "model", None) is self.model
        if self.recording:
            self.val_curves.append([])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The module logs val/acc in its own on_validation_epoch_end, which runs after the
        # callbacks' hook of the same name, so the value is read here.
        value = trainer.callback_metrics.get("val/acc")
        if self.recording and value is not None and not trainer.sanity_checking:
            self.val_curves[-1].append((trainer.global_step, float(value)))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best_state = getattr(pl_module, "best_state", None)
        if self.recording and best_state is not None:
            self.best_state = {name: tensor.detach().cpu().clone() for name, tensor in best_state.items()}

    def log_round(self, run: Any, masks: Masks, global_step: int) -> None:
        """Log an image of every 2-D mask of the round that just finished."""
        images = {
            f"masks/{name}": wandb.Image(mask_image(mask), caption=f"{name} {tuple(mask.shape)}, white = alive")
            for name, mask in masks.items()
            if mask.dim() == 2
        }
        if images:
            run.log({**images, "trainer/global_step": global_step})

    def log_run(self, run: Any, results: Sequence[Any], global_step: int) -> None:
        """Log the round table and the charts of every finished round."""
        if not results:
            return

        values = {
            "charts/rounds": wandb.Table(columns=round_table_columns(results), data=round_table_rows(results, run.id)),
            "charts/accuracy_vs_remaining": self._accuracy_chart(results),
            "charts/layer_sparsity_by_round": self._sparsity_table(results),
            "charts/layer_sparsity": self._sparsity_chart(results),
        }
        curves = [curve for curve in self.val_curves if curve]
        if curves:
            values["charts/val_acc_by_round"] = wandb.plot.line_series(
                xs=[[step for step, _ in curve] for curve in curves],
                ys=[[accuracy for _, accuracy in curve] for curve in curves],
                keys=[f"round {result.round}" for result in results[: len(curves)]],
                title="Validation accuracy of each round",
                xname="step within the round",
            )
        run.log({**values, "trainer/global_step": global_step})

    @staticmethod
    def _accuracy_chart(results: Sequence[Any]) -> Any:
        xs, ys, names = accuracy_curves(results)
        return wandb.plot.line_series(
            xs=xs, ys=ys, keys=names, title="Test accuracy against weights remaining", xname="weights remaining"
        )

    @staticmethod
    def _sparsity_table(results: Sequence[Any]) -> wandb.Table:
        layers = layer_names_of(results)
        rows = [[result.round, *(result.layer_sparsity.get(layer) for layer in layers)] for result in results]
        return wandb.Table(columns=["round", *layers], data=rows)

    @staticmethod
    def _sparsity_chart(results: Sequence[Any]) -> Any:
        layers = layer_names_of(results)
        return wandb.plot.line_series(
            xs=[result.round for result in results],
            ys=[[result.layer_sparsity.get(layer, 0.0) for result in results] for layer in layers],
            keys=layers,
            title="Fraction pruned per layer",
            xname="round",
        )
