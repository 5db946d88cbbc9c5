"""``python train.py`` in offline mode, read back with W&B's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import offline_run_dir, read_wandb_records, records_of_type, run_train

pytestmark = pytest.mark.slow

ROUNDS = 3
EPOCHS = 2
CONTRACT_KEYS = {
    "trainer/global_step",
    "train/loss",
    "val/acc",
    "round",
    "ticket/remaining",
    "ticket/sparsity",
    "ticket/test_acc",
    "ticket/best_val_acc",
    "ticket/early_stop_step",
    "ticket/is_winning",
    "control/reinit_test_acc",
    "sparsity/fc1",
    "sparsity/fc2",
    "sparsity/fc3",
}
LAYER_SIZES = {"fc1": 64 * 300, "fc2": 300 * 100, "fc3": 100 * 10}


@pytest.fixture(scope="module")
def offline_experiment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One offline run of three rounds of two epochs with the reinit control."""
    hydra_dir = tmp_path_factory.mktemp("e2e") / "run"
    hydra_dir.parent.mkdir(parents=True, exist_ok=True)
    process = run_train(
        hydra_dir,
        f"pruning.rounds={ROUNDS}",
        f"trainer.max_epochs={EPOCHS}",
        "pruning.control=reinit",
        "logger.mode=offline",
        "logger.name=lr-${optimizer.lr}",
    )
    assert process.returncode == 0, process.stderr[-3000:]

    records = read_wandb_records(offline_run_dir(hydra_dir))
    history = [record["item"] for record in records_of_type(records, "history")]
    summary: dict = {}
    for update in records_of_type(records, "summary"):
        summary.update(update.get("update", {}))
    return {
        "process": process,
        "hydra_dir": hydra_dir,
        "records": records,
        "history": history,
        "summary": summary,
        "config": records_of_type(records, "run")[0]["config"]["update"],
        "artifacts": records_of_type(records, "artifact"),
    }


def user_keys(row: dict) -> set[str]:
    # Media (charts, tables, mask images) is logged beside the metrics under charts/ and masks/.
    return {key for key in row if not key.startswith(("_", "charts/", "masks/"))}


def rows_with(history: list[dict], key: str) -> list[dict]:
    return [row for row in history if key in row]


def test_every_validation_pass_reaches_wandb(offline_experiment: dict) -> None:
    assert len(rows_with(offline_experiment["history"], "val/acc")) == ROUNDS * EPOCHS


def test_global_step_never_goes_back(offline_experiment: dict) -> None:
    steps = [row["trainer/global_step"] for row in offline_experiment["history"]]

    assert steps == sorted(steps)
    assert steps[-1] > 0


def test_no_step_order_warning(offline_experiment: dict) -> None:
    output = offline_experiment["process"].stdout + offline_experiment["process"].stderr

    assert "step must only increase" not in output.lower()
    assert "tried to log to step" not in output.lower()


def test_metric_keys_are_the_contract(offline_experiment: dict) -> None:
    logged = set().union(*(user_keys(row) for row in offline_experiment["history"]))

    assert logged == CONTRACT_KEYS


def test_one_remaining_value_per_round(offline_experiment: dict) -> None:
    rows = rows_with(offline_experiment["history"], "ticket/remaining")

    assert [row["round"] for row in rows] == list(range(ROUNDS))
    assert rows[0]["ticket/remaining"] == 1.0
    assert rows[0]["ticket/remaining"] > rows[1]["ticket/remaining"] > rows[2]["ticket/remaining"]


@pytest.mark.parametrize(("layer", "rate"), [("fc1", 0.2), ("fc2", 0.2), ("fc3", 0.1)])
def test_layer_sparsity_follows_rate(offline_experiment: dict, layer: str, rate: float) -> None:
    rows = rows_with(offline_experiment["history"], "ticket/remaining")

    for row in rows:
        expected = 1 - (1 - rate) ** row["round"]
        assert abs(row[f"sparsity/{layer}"] - expected) * LAYER_SIZES[layer] <= 1.0, row["round"]


def test_total_sparsity_is_weighted(offline_experiment: dict) -> None:
    total = sum(LAYER_SIZES.values())
    for row in rows_with(offline_experiment["history"], "ticket/remaining"):
        weighted = sum(row[f"sparsity/{layer}"] * size for layer, size in LAYER_SIZES.items()) / total
        assert row["ticket/sparsity"] == pytest.approx(weighted)
        assert row["ticket/sparsity"] == pytest.approx(1 - row["ticket/remaining"])


def test_control_logged_every_round(offline_experiment: dict) -> None:
    rows = rows_with(offline_experiment["history"], "control/reinit_test_acc")

    assert len(rows) == ROUNDS


def test_summary_has_sweep_objectives(offline_experiment: dict) -> None:
    summary = offline_experiment["summary"]
    rounds = rows_with(offline_experiment["history"], "ticket/remaining")

    assert summary["ticket/dense_test_acc"] == rounds[0]["ticket/test_acc"]
    assert summary["ticket/min_winning_remaining"] in {row["ticket/remaining"] for row in rounds}


def test_mask_artifact_version_per_round(offline_experiment: dict) -> None:
    masks = [artifact for artifact in offline_experiment["artifacts"] if artifact["type"] == "mask"]

    assert len(masks) == ROUNDS
    assert len({artifact["name"] for artifact in masks}) == 1
    assert [f"round-{k}" in artifact["aliases"] for k, artifact in enumerate(masks)] == [True] * ROUNDS


def test_mask_artifact_metadata(offline_experiment: dict) -> None:
    masks = [artifact for artifact in offline_experiment["artifacts"] if artifact["type"] == "mask"]
    metadata = json.loads(masks[1]["metadata"])

    assert metadata["round"] == 1
    assert set(metadata["layer_sparsity"]) == {"fc1", "fc2", "fc3"}
    assert len(metadata["config_digest"]) == 16


def test_init_weights_artifact(offline_experiment: dict) -> None:
    kinds = [artifact["type"] for artifact in offline_experiment["artifacts"]]

    assert kinds.count("init-weights") == 1


def test_run_config_is_plain_and_resolved(offline_experiment: dict) -> None:
    config = offline_experiment["config"]

    assert config["logger"]["name"] == "lr-0.0012"
    assert config["optimizer"]["lr"] == 0.0012
    assert config["model"]["hidden"] == [300, 100]
    assert "_content" not in json.dumps(config)


def test_no_locked_config_warning(offline_experiment: dict) -> None:
    output = offline_experiment["process"].stdout + offline_experiment["process"].stderr

    assert "locked" not in output.lower()


def test_offline_sync_command_printed(offline_experiment: dict) -> None:
    run_dir = offline_run_dir(offline_experiment["hydra_dir"])

    assert f"wandb sync {run_dir}" in offline_experiment["process"].stdout


def test_saved_masks_load_and_shrink(offline_experiment: dict) -> None:
    mask_dir = offline_experiment["hydra_dir"] / "masks"
    masks = [load_file(str(mask_dir / f"round-{k}.safetensors")) for k in range(ROUNDS)]

    for earlier, later in zip(masks, masks[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any(), name


def test_round_results_file(offline_experiment: dict) -> None:
    results = json.loads((offline_experiment["hydra_dir"] / "rounds.json").read_text())

    assert [result["round"] for result in results] == list(range(ROUNDS))
    assert all("reinit" in result["controls"] for result in results)


def test_validation_step_matches_early_stop(offline_experiment: dict) -> None:
    history = offline_experiment["history"]
    round_rows = rows_with(history, "ticket/remaining")
    first_round_end = round_rows[0]["trainer/global_step"]
    first_round_validations = [row for row in rows_with(history, "val/acc") if row["trainer/global_step"] <= first_round_end]

    assert first_round_validations[-1]["trainer/global_step"] == first_round_end
    assert round_rows[0]["ticket/early_stop_step"] in {row["trainer/global_step"] for row in first_round_validations}
