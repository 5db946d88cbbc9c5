"""Mask and ticket files: Jaccard overlap, shape checks, and files that must never be unpickled."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from conftest import compose_config, read_wandb_records, records_of_type
from lt_sweeps import commands, lineage
from lt_sweeps.config import ConfigError
from lt_sweeps.imp import LotteryExperiment
from lt_sweeps.mask_analysis import TOTAL, jaccard, jaccard_by_layer
from lt_sweeps.progress import RoundProgress
from lt_sweeps.storage import save_tensors

SMALL_MODEL = ["model.hidden=[8]", "logger.mode=disabled"]


class CreatesFileWhenUnpickled:
    """Pickle payload: unpickling it calls ``open(path, "w")``, which creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def random_masks(seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.rand(8, 64, generator=generator) > 0.5,
        "fc2.weight": torch.rand(10, 8, generator=generator) > 0.5,
    }


def test_jaccard_of_identical_masks_is_one() -> None:
    masks = random_masks(0)

    overlap = jaccard_by_layer(masks, {name: mask.clone() for name, mask in masks.items()})

    assert overlap == {"fc1.weight": 1.0, "fc2.weight": 1.0, TOTAL: 1.0}


def test_jaccard_of_complements_is_zero() -> None:
    masks = random_masks(0)

    overlap = jaccard_by_layer(masks, {name: ~mask for name, mask in masks.items()})

    assert set(overlap.values()) == {0.0}


def test_jaccard_counts_shared_alive_weights() -> None:
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([True, False, True, False])

    assert jaccard(a, b) == pytest.approx(1 / 3)


def test_jaccard_of_two_empty_masks_is_one() -> None:
    empty = torch.zeros(4, dtype=torch.bool)

    assert jaccard(empty, empty) == 1.0


def test_jaccard_rejects_shape_mismatch() -> None:
    a = random_masks(0)
    b = {"fc1.weight": torch.ones(8, 32, dtype=torch.bool), "fc2.weight": a["fc2.weight"]}

    with pytest.raises(ConfigError, match=r"mask fc1.weight has shape \(8, 64\) in A and \(8, 32\) in B"):
        jaccard_by_layer(a, b)


def test_masks_command_prints_overlap(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    save_tensors(tmp_path / "a.safetensors", random_masks(0))
    save_tensors(tmp_path / "b.safetensors", random_masks(0))

    exit_code = commands.main(["masks", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")])
    lines = capsys.readouterr().out.splitlines()

    assert exit_code == 0
    assert [line.split()[0] for line in lines[1:]] == ["fc1.weight", "fc2.weight", TOTAL]
    assert all(line.endswith("1.0000") for line in lines[1:])


def test_masks_command_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exit_code = commands.main(["masks", str(tmp_path / "absent.safetensors"), str(tmp_path / "absent.safetensors")])
    error = capsys.readouterr().err

    assert exit_code == 2
    assert error.count("\n") == 1
    assert "not found" in error


def test_masks_command_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    exit_code = commands.main(["masks", str(tmp_path), str(tmp_path)])
    error = capsys.readouterr().err

    assert exit_code == 2
    assert error.count("\n") == 1
    assert "is a folder" in error
    assert ".safetensors" in error
    assert "not found" not in error


def test_pickle_payload_really_runs(tmp_path: Path) -> None:
    # Control for the rejection test below: the payload does create its file when unpickled.
    marker = tmp_path / "control-marker"

    pickle.loads(pickle.dumps(CreatesFileWhenUnpickled(marker)))

    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_pickle_mask_rejected_never_run(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / f"evil{suffix}"
    evil.write_bytes(pickle.dumps({"fc1.weight": CreatesFileWhenUnpickled(marker)}))
    cfg = compose_config(*SMALL_MODEL, f"pruning.mask_artifact={evil}")

    with pytest.raises(ConfigError, match="is not a safetensors file"):
        LotteryExperiment(cfg, tmp_path / "run")

    assert not marker.exists()


def test_torch_save_mask_rejected(tmp_path: Path) -> None:
    path = tmp_path / "mask.pt"
    torch.save(random_masks(0), path)

    with pytest.raises(ConfigError, match="pickle and torch.save files are rejected"):
        lineage.read_masks(path, "mask.pt")


def test_mask_shape_mismatch_error(tmp_path: Path) -> None:
    path = tmp_path / "mask.safetensors"
    save_tensors(path, {"fc1.weight": torch.ones(16, 64, dtype=torch.bool), "fc2.weight": torch.ones(10, 16, dtype=torch.bool)})
    cfg = compose_config(*SMALL_MODEL, f"pruning.mask_artifact={path}")

    with pytest.raises(ConfigError) as error:
        LotteryExperiment(cfg, tmp_path / "run")

    message = str(error.value)
    assert "\n" not in message
    assert "mask fc1.weight has shape (16, 64) but the parameter has (8, 64)" in message
    assert "model.hidden" in message


def test_mask_missing_layer_error(tmp_path: Path) -> None:
    path = tmp_path / "mask.safetensors"
    save_tensors(path, {"fc1.weight": torch.ones(8, 64, dtype=torch.bool)})
    cfg = compose_config(*SMALL_MODEL, f"pruning.mask_artifact={path}")

    with pytest.raises(ConfigError, match=r"missing masks \['fc2.weight'\]"):
        LotteryExperiment(cfg, tmp_path / "run")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("absent.safetensors", "file absent.safetensors not found"),
        ("mask-nosuchrun:round-1", "no offline run nosuchrun found"),
        ("mask-nosuchrun:v3", "no offline run nosuchrun found"),
    ],
)
def test_mask_artifact_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = compose_config(*SMALL_MODEL, f"pruning.mask_artifact={value}")

    with pytest.raises(ConfigError, match=expected):
        LotteryExperiment(cfg, tmp_path / "run")


def test_transferred_mask_starts_round_zero(tmp_path: Path) -> None:
    masks = {"fc1.weight": torch.rand(8, 64) > 0.5, "fc2.weight": torch.ones(10, 8, dtype=torch.bool)}
    path = tmp_path / "mask.safetensors"
    save_tensors(path, masks)
    cfg = compose_config(*SMALL_MODEL, f"pruning.mask_artifact={path}")

    experiment = LotteryExperiment(cfg, tmp_path / "run")

    assert torch.equal(experiment.masks["fc1.weight"], masks["fc1.weight"])
    assert torch.equal(experiment.masks["fc2.weight"], masks["fc2.weight"])


def test_progress_bar_off_without_terminal(capsys: pytest.CaptureFixture) -> None:
    progress = RoundProgress(3)

    assert progress.bar is None
    progress.close()
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_round_state() -> None:
    class Result:
        remaining = 0.512
        test_acc = 0.9612

    stream = io.StringIO()
    progress = RoundProgress(3, enabled=True, stream=stream)
    progress.update(Result())
    progress.close()
    error = stream.getvalue()

    assert "1/3" in error
    assert "51.2% remaining, test acc 96.12%" in error


def test_masks_command_logs_table_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_tensors(tmp_path / "a.safetensors", random_masks(0))
    save_tensors(tmp_path / "b.safetensors", random_masks(1))

    exit_code = commands.main(["masks", "a.safetensors", "b.safetensors", "--log"])
    records = read_wandb_records(next((tmp_path / "wandb").glob("offline-run-*")))
    history = [record["item"] for record in records_of_type(records, "history")]
    summary: dict = {}
    for update in records_of_type(records, "summary"):
        summary.update(update.get("update", {}))

    assert exit_code == 0
    assert history[0]["masks/jaccard._type"] == "table-file"
    assert 0 < summary["masks/jaccard_all"] < 1


@pytest.mark.parametrize("value", [0.5, 3.0, -1.0])
def test_non_binary_mask_rejected(tmp_path: Path, value: float) -> None:
    path = tmp_path / "mask.safetensors"
    save_tensors(path, {"fc1.weight": torch.full((8, 64), value), "fc2.weight": torch.ones(10, 8)})

    with pytest.raises(ConfigError, match="mask fc1.weight contains values other than 0 and 1"):
        lineage.read_masks(path, "mask.safetensors")


def test_float_zero_one_mask_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mask.safetensors"
    save_tensors(path, {"fc1.weight": torch.eye(8, 64), "fc2.weight": torch.ones(10, 8)})

    masks = lineage.read_masks(path, "mask.safetensors")

    assert int(masks["fc1.weight"].sum()) == 8
    assert masks["fc1.weight"].dtype == torch.bool
