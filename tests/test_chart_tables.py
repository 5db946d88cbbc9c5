"""Round tables and chart data built from RoundResults, with any controls and an optional verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lt_sweeps.charts import accuracy_curves, mask_image, round_table_columns, round_table_rows
from lt_sweeps.imp import RoundResult


@dataclass
class JudgedRound(RoundResult):
    """A RoundResult whose history row carries a winning-ticket verdict."""

    is_winning: bool = False

    def metrics(self) -> dict[str, Any]:
        return {**super().metrics(), "ticket/is_winning": self.is_winning}


def make_round(index: int, controls: dict[str, float], result_type: type = RoundResult, **extra: Any) -> RoundResult:
    return result_type(
        round=index,
        remaining=0.8**index,
        layer_sparsity={"fc1": 1 - 0.8**index, "fc2": 1 - 0.9**index},
        test_acc=0.9 + index / 100,
        best_val_acc=0.91,
        early_stop_step=10 * index,
        steps=100,
        controls=controls,
        **extra,
    )


def test_table_without_controls() -> None:
    results = [make_round(0, {}), make_round(1, {})]

    columns = round_table_columns(results)

    assert columns == [
        "round", "remaining", "sparsity/fc1", "sparsity/fc2",
        "test_acc", "best_val_acc", "early_stop_step", "is_winning", "mask_artifact",
    ]


def test_table_lists_every_control() -> None:
    results = [make_round(0, {"reinit": 0.5}), make_round(1, {"reinit": 0.6, "random_mask": 0.4})]

    rows = [dict(zip(round_table_columns(results), row)) for row in round_table_rows(results, "abc")]

    assert rows[0]["reinit_test_acc"] == 0.5
    assert rows[0]["random_mask_test_acc"] is None
    assert rows[1]["random_mask_test_acc"] == 0.4


def test_table_has_verdict_when_present() -> None:
    results = [make_round(0, {}, JudgedRound, is_winning=True), make_round(1, {}, JudgedRound, is_winning=False)]

    rows = [dict(zip(round_table_columns(results), row)) for row in round_table_rows(results, "abc")]

    assert [row["is_winning"] for row in rows] == [True, False]
    assert [row["mask_artifact"] for row in rows] == ["mask-abc:round-0", "mask-abc:round-1"]


def test_accuracy_curves_skip_untrained_control() -> None:
    results = [make_round(0, {}), make_round(1, {"reinit": 0.6})]

    xs, ys, names = accuracy_curves(results)

    assert names == ["ticket", "reinit"]
    assert xs[1] == [0.8]
    assert ys[1] == [0.6]


def test_mask_image_is_pooled() -> None:
    mask = torch.zeros(300, 784, dtype=torch.bool)
    mask[:150] = True

    image = mask_image(mask)

    assert image.shape == (64, 64)
    assert image.dtype == np.uint8
    assert image[0, 0] == 255
    assert image[-1, -1] == 0


def test_small_mask_image_keeps_size() -> None:
    image = mask_image(torch.ones(10, 16, dtype=torch.bool))

    assert image.shape == (10, 16)
    assert (image == 255).all()
