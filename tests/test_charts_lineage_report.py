"""What a run shows in W&B (charts, tables, metric definitions, tickets), mask transfer, and reports.

One offline source run of three rounds with the reinit control serves most tests. Two
more runs train its round-2 mask: one from the mask file, one from the artifact
reference ``mask-<run id>:round-2`` found among the offline runs.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import compose_config, isolate_wandb, offline_run_dir, read_wandb_records, records_of_type, run_train
from lt_sweeps import commands, lineage, report
from lt_sweeps.data import build_datamodule
from lt_sweeps.module import evaluate_accuracy

pytestmark = pytest.mark.slow

ROUNDS = 3
TINY = ["model.hidden=[32,16]", "trainer.max_epochs=2"]
SWEEP_FILE = "method: grid\nmetric:\n  name: ticket/test_acc\n  goal: maximize\nparameters: {}\n"


def read_run(hydra_dir: Path) -> dict:
    run_dir = offline_run_dir(hydra_dir)
    records = read_wandb_records(run_dir)
    return {
        "hydra_dir": hydra_dir,
        "run_dir": run_dir,
        "run_id": run_dir.name.rsplit("-", 1)[-1],
        "records": records,
        "history": [record["item"] for record in records_of_type(records, "history")],
        "metrics": records_of_type(records, "metric"),
        "artifacts": records_of_type(records, "artifact"),
        "rounds": json.loads((hydra_dir / "rounds.json").read_text()),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The source run and the two runs that train its round-2 mask, all offline, in one folder."""
    base = tmp_path_factory.mktemp("lineage")
    sweep_file = base / "sweep.yaml"
    sweep_file.write_text(SWEEP_FILE)

    with pytest.MonkeyPatch.context() as patch:
        isolate_wandb(patch, base / "wandb-home")
        patch.setenv("LT_SWEEPS_SWEEP_FILE", str(sweep_file))
        process = run_train(
            base / "source", *TINY, f"pruning.rounds={ROUNDS}", "pruning.control=reinit", "logger.mode=offline"
        )
        assert process.returncode == 0, process.stderr[-3000:]
        source = read_run(base / "source")

        patch.delenv("LT_SWEEPS_SWEEP_FILE")
        mask_file = base / "source" / "masks" / "round-2.safetensors"
        from_file = run_train(
            base / "from_file", *TINY, "pruning.rounds=1", f"pruning.mask_artifact={mask_file}", "logger.mode=offline"
        )
        assert from_file.returncode == 0, from_file.stderr[-3000:]

        reference = f"mask-{source['run_id']}:round-2"
        from_artifact = run_train(
            base / "from_artifact", *TINY, "pruning.rounds=1", f"pruning.mask_artifact={reference}", "logger.mode=offline"
        )
        assert from_artifact.returncode == 0, from_artifact.stderr[-3000:]

    return {
        "base": base,
        "source": source,
        "from_file": read_run(base / "from_file"),
        "from_artifact": read_run(base / "from_artifact"),
        "mask_file": mask_file,
    }


def metric_record(metrics: list[dict], name: str) -> dict:
    matches = [metric for metric in metrics if metric.get("name") == name]
    assert matches, f"no define_metric record for {name}"
    return matches[-1]


def logged_file(run: dict, key: str) -> Path:
    """Return the file of a media value (table, image) logged under ``key``."""
    rows = [row for row in run["history"] if f"{key}.path" in row]
    assert rows, f"{key} not logged"
    return run["run_dir"] / "files" / rows[-1][f"{key}.path"]


def logged_table(run: dict, key: str) -> dict:
    return json.loads(logged_file(run, key).read_text())


def test_val_acc_summary_is_max(runs: dict) -> None:
    record = metric_record(runs["source"]["metrics"], "val/acc")

    assert record["summary"] == {"max": True}
    assert record["step_metric"] == "trainer/global_step"


def test_train_loss_summary_is_min(runs: dict) -> None:
    record = metric_record(runs["source"]["metrics"], "train/loss")

    assert record["summary"] == {"min": True}


def test_sweep_metric_summary_follows_goal(runs: dict) -> None:
    record = metric_record(runs["source"]["metrics"], "ticket/test_acc")

    assert record["summary"] == {"max": True}
    assert record["step_metric"] == "round"


def test_no_sweep_metric_without_sweep(runs: dict) -> None:
    names = {metric.get("name") for metric in runs["from_file"]["metrics"]}

    assert "ticket/test_acc" not in names


def test_round_keys_chart_against_round(runs: dict) -> None:
    globs = {metric.get("glob_name"): metric.get("step_metric") for metric in runs["source"]["metrics"]}

    assert globs["ticket/*"] == "round"
    assert globs["control/*"] == "round"


def test_round_table_has_row_per_round(runs: dict) -> None:
    table = logged_table(runs["source"], "charts/rounds")
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    run_id = runs["source"]["run_id"]

    assert [row["round"] for row in rows] == list(range(ROUNDS))
    assert [row["test_acc"] for row in rows] == [result["test_acc"] for result in runs["source"]["rounds"]]
    assert [row["reinit_test_acc"] for row in rows] == [result["controls"]["reinit"] for result in runs["source"]["rounds"]]
    assert [row["mask_artifact"] for row in rows] == [f"mask-{run_id}:round-{k}" for k in range(ROUNDS)]


def test_round_table_columns(runs: dict) -> None:
    columns = logged_table(runs["source"], "charts/rounds")["columns"]

    for column in ("remaining", "sparsity/fc1", "sparsity/fc2", "sparsity/fc3", "early_stop_step", "best_val_acc"):
        assert column in columns


def test_accuracy_chart_has_ticket_and_control(runs: dict) -> None:
    table = logged_table(runs["source"], "charts/accuracy_vs_remaining_table")
    lines = {row[1] for row in table["data"]}
    ticket_x = [row[0] for row in table["data"] if row[1] == "ticket"]

    assert lines == {"ticket", "reinit"}
    assert ticket_x == [result["remaining"] for result in runs["source"]["rounds"]]


def test_accuracy_chart_is_line_series(runs: dict) -> None:
    configs = records_of_type(runs["source"]["records"], "config")
    keys = set().union(*(config["update"].keys() for config in configs))

    assert "_wandb.visualize.charts/accuracy_vs_remaining" in keys
    assert "_wandb.visualize.charts/val_acc_by_round" in keys
    assert "_wandb.visualize.charts/layer_sparsity" in keys


def test_val_curves_one_line_per_round(runs: dict) -> None:
    table = logged_table(runs["source"], "charts/val_acc_by_round_table")
    by_round: dict[str, list[int]] = {}
    for step, line, _ in table["data"]:
        by_round.setdefault(line, []).append(step)
    steps_per_round = runs["source"]["rounds"][0]["steps"]

    assert sorted(by_round) == [f"round {k}" for k in range(ROUNDS)]
    assert all(len(steps) == 2 for steps in by_round.values())
    assert all(0 < step <= steps_per_round for steps in by_round.values() for step in steps)


def test_layer_sparsity_table_by_round(runs: dict) -> None:
    table = logged_table(runs["source"], "charts/layer_sparsity_by_round")

    assert table["columns"] == ["round", "fc1", "fc2", "fc3"]
    assert [row[1] for row in table["data"]] == [result["layer_sparsity"]["fc1"] for result in runs["source"]["rounds"]]


def test_mask_images_every_round(runs: dict) -> None:
    rows = [row for row in runs["source"]["history"] if "masks/fc1.weight.path" in row]

    assert len(rows) == ROUNDS
    assert all(row["masks/fc1.weight.width"] <= 64 and row["masks/fc1.weight.height"] <= 64 for row in rows)


def test_mask_image_shows_pruned_share(runs: dict) -> None:
    image = Image.open(logged_file(runs["source"], "masks/fc1.weight")).convert("L")
    alive_share = np.asarray(image, dtype=np.float64).mean() / 255

    assert alive_share == pytest.approx(1 - runs["source"]["rounds"][-1]["layer_sparsity"]["fc1"], abs=0.01)


def test_mask_artifact_metadata_names(runs: dict) -> None:
    masks = [artifact for artifact in runs["source"]["artifacts"] if artifact["type"] == "mask"]
    metadata = json.loads(masks[-1]["metadata"])

    assert metadata["data"] == "digits"
    assert metadata["model"] == "mlp"
    assert metadata["remaining"] == runs["source"]["rounds"][-1]["remaining"]


def test_ticket_artifact_logged(runs: dict) -> None:
    tickets = [artifact for artifact in runs["source"]["artifacts"] if artifact["type"] == "ticket"]
    metadata = json.loads(tickets[0]["metadata"])

    assert len(tickets) == 1
    assert tickets[0]["name"] == f"ticket-{runs['source']['run_id']}"
    assert metadata["round"] == ROUNDS - 1
    assert set(metadata) == {"round", "remaining", "layer_sparsity", "config_digest", "data", "model"}


def test_load_ticket_reproduces_test_acc(runs: dict) -> None:
    model = lineage.load_ticket(runs["source"]["hydra_dir"] / "ticket.safetensors")
    data = build_datamodule(compose_config(*TINY).data, 0)

    accuracy = evaluate_accuracy(model, data.test_dataloader())

    assert accuracy == pytest.approx(runs["source"]["rounds"][-1]["test_acc"])


def test_load_ticket_keeps_pruned_weights_zero(runs: dict) -> None:
    mask = load_file(str(runs["source"]["hydra_dir"] / "masks" / f"round-{ROUNDS - 1}.safetensors"))

    for weights in ("trained", "init"):
        model = lineage.load_ticket(runs["source"]["hydra_dir"] / "ticket.safetensors", weights=weights)
        assert not model.fc1.weight[~mask["fc1.weight"]].any(), weights


@pytest.mark.parametrize("transfer", ["from_file", "from_artifact"])
def test_transfer_trains_source_mask(runs: dict, transfer: str) -> None:
    source_mask = load_file(str(runs["mask_file"]))
    trained_mask = load_file(str(runs[transfer]["hydra_dir"] / "masks" / "round-0.safetensors"))

    assert set(trained_mask) == set(source_mask)
    assert all(torch.equal(trained_mask[name], source_mask[name]) for name in source_mask)


@pytest.mark.parametrize("transfer", ["from_file", "from_artifact"])
def test_transfer_round_zero_remaining(runs: dict, transfer: str) -> None:
    assert runs[transfer]["rounds"][0]["remaining"] == runs["source"]["rounds"][2]["remaining"]


def test_transfer_records_source_in_config(runs: dict) -> None:
    config = records_of_type(runs["from_artifact"]["records"], "run")[0]["config"]["update"]

    assert config["pruning"]["mask_artifact"] == f"mask-{runs['source']['run_id']}:round-2"


def test_masks_command_on_artifact_reference(runs: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(runs["base"])
    reference = f"mask-{runs['source']['run_id']}:round-2"

    exit_code = commands.main(["masks", str(runs["mask_file"]), reference])
    output = capsys.readouterr().out

    assert exit_code == 0
    assert re.search(r"^all\s+\d+\s+\d+\s+\d+\s+1\.0000$", output, re.MULTILINE)


@pytest.fixture(scope="module")
def offline_report(runs: dict) -> str:
    output = runs["base"] / "report" / "report.html"
    assert commands.main(["report", str(runs["base"]), "-o", str(output), "--title", "digits IMP"]) == 0
    return output.read_text()


def embedded_images(page: str) -> list[Image.Image]:
    encoded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(value))) for value in encoded]


def test_report_trial_table_has_every_run(offline_report: str) -> None:
    trial_table = offline_report.split("<h2>Trials</h2>")[1].split("</table>")[0]

    assert trial_table.count("<tr>") == 1 + 3


def test_report_embeds_plots(offline_report: str) -> None:
    images = embedded_images(offline_report)

    # accuracy plot, then per run a validation plot and a sparsity plot
    assert len(images) == 1 + 3 * 2
    assert all(image.format == "PNG" for image in images)
    assert all(image.width >= 400 and image.height >= 250 for image in images)


def test_report_plots_are_not_blank(offline_report: str) -> None:
    for image in embedded_images(offline_report):
        grey = image.convert("L")
        low, high = grey.getextrema()
        assert high - low > 100


def test_report_has_round_table(runs: dict, offline_report: str) -> None:
    assert f"mask-{runs['source']['run_id']}:round-2" in offline_report
    assert "<th>reinit_test_acc</th>" in offline_report


def test_report_is_self_contained(offline_report: str) -> None:
    assert "http://" not in offline_report
    assert "https://" not in offline_report
    assert not re.search(r'src="(?!data:)', offline_report)


def test_report_val_curves_split_by_round(runs: dict) -> None:
    history = runs["source"]["history"]

    curves = report.split_val_curves(history)

    assert len(curves) == ROUNDS
    assert all(len(curve) == 2 for curve in curves)
    assert all(0 <= step <= runs["source"]["rounds"][1]["steps"] for step, _ in curves[1])
    assert [step for step, _ in curves[1]] == sorted(step for step, _ in curves[1])


def test_report_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exit_code = commands.main(["report", str(tmp_path / "absent")])

    assert exit_code == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_online_report_built_without_saving() -> None:
    # Only building is tested: saving a W&B Report needs a W&B server.
    pytest.importorskip("wandb_workspaces")

    built = report.build_online_report("my-team", "lt-sweeps", sweep="abc123")
    grid = built.blocks[2]
    titles = [panel.title for panel in grid.panels]

    assert built.title == "Lottery tickets: sweep abc123"
    assert grid.runsets[0].filters == "Metric('Sweep') == 'abc123'"
    assert "Test accuracy against weights remaining" in titles


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_online_report_needs_one_selection() -> None:
    pytest.importorskip("wandb_workspaces")

    with pytest.raises(report.ConfigError, match="exactly one of --sweep ID and --group NAME"):
        report.build_online_report("my-team", "lt-sweeps")


def test_report_columns_show_varying_keys() -> None:
    from types import SimpleNamespace

    base = {"seed": 0, "pruning": {"rate": 0.2, "rewind": "init", "scope": "layerwise"}, "logger": {"name": "a"}}
    late = {"seed": 0, "pruning": {"rate": 0.2, "rewind": "step", "scope": "layerwise"}, "logger": {"name": "b"}}
    runs = [SimpleNamespace(config=base), SimpleNamespace(config=late)]

    assert report.varying_config_keys(runs) == ["pruning.rewind"]
