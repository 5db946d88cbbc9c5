"""Data readers on tiny files written in the real formats, checksums, preprocessing."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from lt_sweeps.config import ConfigError
from lt_sweeps.data import build_datamodule, cifar, idx
from lt_sweeps.data.files import DataFileError, download, verify_md5
from lt_sweeps.data.idx import read_idx
from lt_sweeps.data.mnist1d import load_mnist1d
from lt_sweeps.data.transforms import BatchTransform, random_crop, random_horizontal_flip

from conftest import compose_config

TRAIN_COUNT = 24
TEST_COUNT = 8


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format: two zero bytes, type 0x08, rank, sizes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, gzipped: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four MNIST IDX files with random images; return the arrays by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (TRAIN_COUNT, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, TRAIN_COUNT, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (TEST_COUNT, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, TEST_COUNT, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if gzipped:
            (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


def write_cifar_batches(folder: Path, count: int = 12, protocol: int = 2) -> dict[str, dict]:
    """Write the six CIFAR-10 python batches with random images, keys as bytes like the official files."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(label) for label in rng.integers(0, 10, count)],
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [f"image_{index}.png".encode() for index in range(count)],
        }
        with (folder / name).open("wb") as stream:
            pickle.dump(batch, stream, protocol=protocol)
        batches[name] = batch
    return batches


def image_config(name: str, root: Path, *overrides: str):
    return compose_config(f"data={name}", f"data.root={root}", "data.val_size=4", "data.eval_batch_size=5", *overrides)


# IDX files


@pytest.mark.parametrize("gzipped", [True, False])
def test_read_idx_round_trip(tmp_path: Path, gzipped: bool) -> None:
    arrays = write_idx_set(tmp_path, gzipped)
    suffix = ".gz" if gzipped else ""

    images = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    labels = read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}")

    assert np.array_equal(images, arrays["train-images-idx3-ubyte"])
    assert np.array_equal(labels, arrays["train-labels-idx1-ubyte"])


def test_read_idx_rejects_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))[:-10])

    with pytest.raises(DataFileError, match="truncated or corrupt"):
        read_idx(path)


def test_read_idx_rejects_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04 not an idx file")

    with pytest.raises(DataFileError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_datamodule_splits_and_normalizes(tmp_path: Path, name: str) -> None:
    write_idx_set(tmp_path / name, gzipped=True)

    datamodule = build_datamodule(image_config(name, tmp_path).data, seed=0)
    inputs, labels = next(iter(datamodule.train_dataloader()))
    channel_mean = torch.cat([batch for batch, _ in datamodule.train_dataloader()]).mean()

    assert (len(datamodule.train), len(datamodule.val), len(datamodule.test)) == (TRAIN_COUNT - 4, 4, TEST_COUNT)
    assert datamodule.train.inputs.dtype == torch.uint8
    assert datamodule.input_shape == (1, 28, 28)
    assert datamodule.num_classes == 10
    assert inputs.dtype == torch.float32
    assert channel_mean.item() == pytest.approx(0.0, abs=1e-4)


def test_idx_fixed_normalization(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "mnist", gzipped=False)
    cfg = image_config("mnist", tmp_path, "data.mean=[0.5]", "data.std=[0.25]")

    datamodule = build_datamodule(cfg.data, seed=0)
    inputs, _ = next(iter(datamodule.test_dataloader()))

    expected = (datamodule.test.inputs[:5].float() / 255 - 0.5) / 0.25
    assert torch.allclose(inputs, expected, atol=1e-5)


def test_missing_idx_file_message(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "mnist", gzipped=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()

    with pytest.raises(ConfigError) as raised:
        build_datamodule(image_config("mnist", tmp_path).data, seed=0)

    message = str(raised.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "mnist") in message
    assert "data.download=true" in message
    assert "train-images" not in message
    assert "\n" not in message


def test_idx_download_from_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The official mirrors are replaced by a file:// folder so that the real download,
    # MD5 check and rename run without a network.
    mirror = tmp_path / "mirror"
    arrays = write_idx_set(mirror, gzipped=True)
    sums = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in mirror.iterdir()}
    monkeypatch.setitem(idx.MIRRORS, "mnist", (mirror.as_uri() + "/",))
    monkeypatch.setitem(idx.MD5_SUMS, "mnist", sums)
    root = tmp_path / "root"

    datamodule = build_datamodule(image_config("mnist", root, "data.download=true").data, seed=0)

    assert sorted(path.name for path in (root / "mnist").iterdir()) == sorted(sums)
    assert torch.equal(datamodule.test.inputs[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))


def test_idx_labels_out_of_range(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "mnist", gzipped=False)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(TEST_COUNT, 10, dtype=np.uint8)))

    with pytest.raises(DataFileError, match="labels outside 0-9"):
        build_datamodule(image_config("mnist", tmp_path).data, seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=cifar10", "model=resnet20", "data.mean=[0.5]"], "data.mean=[0.5] is invalid: cifar10 has 3 channel(s)"),
        (["data=mnist", "data.std=[0.0]"], "data.std=[0.0] is invalid"),
        (["data=cifar10", "model=vgg16", "data.crop_padding=-1"], "data.crop_padding=-1 is invalid"),
        (["data=cifar10", "model=resnet20", "model.width=0"], "model.width=0 is invalid"),
        (["data=mnist1d", "data.num_samples=5"], "data.num_samples=5 is invalid"),
        (["data=mnist", "data.eval_batch_size=0"], "data.eval_batch_size=0 is invalid"),
        (["data=mnist", "model=lenet_300_100", "model.init=uniform"], "model.init='uniform' is invalid"),
    ],
)
def test_data_and_model_keys_validated(overrides: list[str], message: str) -> None:
    from lt_sweeps.config import validate_config

    cfg = compose_config(*overrides)

    with pytest.raises(ConfigError) as raised:
        validate_config(cfg)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_data_root_outside_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LT_SWEEPS_DATA_ROOT", raising=False)
    default_root = compose_config("data=mnist").data.root
    monkeypatch.setenv("LT_SWEEPS_DATA_ROOT", str(tmp_path))
    overridden_root = compose_config("data=mnist").data.root

    assert default_root == "~/.cache/lt-sweeps"
    assert overridden_root == str(tmp_path)


# Checksums and downloads


def test_verify_md5_accepts_matching_sum(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"lottery ticket")

    verify_md5(path, hashlib.md5(b"lottery ticket").hexdigest())


def test_verify_md5_rejects_wrong_sum(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"lottery ticket")

    with pytest.raises(DataFileError, match="expected 0123456789abcdef0123456789abcdef"):
        verify_md5(path, "0123456789abcdef0123456789abcdef")


def test_download_with_wrong_sum_keeps_nothing(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"not the official file")
    destination = tmp_path / "data" / "train-images-idx3-ubyte.gz"

    with pytest.raises(DataFileError, match="wrong MD5"):
        download([source.as_uri()], destination, "0" * 32)

    assert list(destination.parent.iterdir()) == []


def test_download_failure_names_fix(tmp_path: Path) -> None:
    destination = tmp_path / "data" / "cifar-10-python.tar.gz"

    with pytest.raises(DataFileError) as raised:
        download([(tmp_path / "absent.tar.gz").as_uri()], destination, "0" * 32)

    assert f"put the official file at {destination}" in str(raised.value)
    assert not destination.exists()


# CIFAR-10 batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_read_cifar_batch(tmp_path: Path, protocol: int) -> None:
    batches = write_cifar_batches(tmp_path, protocol=protocol)

    images, labels = cifar.read_batch(tmp_path / "data_batch_1")

    assert images.shape == (12, 3, 32, 32)
    assert np.array_equal(images.reshape(12, -1), batches["data_batch_1"][b"data"])
    assert labels.tolist() == batches["data_batch_1"][b"labels"]


class MakeFolder:
    """Pickles to a call of os.mkdir: loading it must not create the folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_cifar_batch_with_code_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-unpickling"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": MakeFolder(marker), b"labels": []}, protocol=2))

    with pytest.raises(DataFileError, match=r"global \w+\.mkdir is not allowed"):
        cifar.read_batch(path)

    assert not marker.exists()


def test_cifar_datamodule_augments_training_only(tmp_path: Path) -> None:
    write_cifar_batches(tmp_path / "cifar10" / cifar.BATCH_FOLDER)

    datamodule = build_datamodule(image_config("cifar10", tmp_path).data, seed=0)
    transform = datamodule.transform
    train_inputs, _ = next(iter(datamodule.train_dataloader()))
    val_inputs, _ = next(iter(datamodule.val_dataloader()))

    assert (len(datamodule.train), len(datamodule.val), len(datamodule.test)) == (5 * 12 - 4, 4, 12)
    assert (transform.crop_padding, transform.horizontal_flip) == (4, True)
    assert train_inputs.shape == (56, 3, 32, 32)
    assert torch.allclose(val_inputs, transform.without_augmentation()(datamodule.val.inputs))


def test_cifar_augmentation_can_be_disabled(tmp_path: Path) -> None:
    write_cifar_batches(tmp_path / "cifar10" / cifar.BATCH_FOLDER)

    datamodule = build_datamodule(image_config("cifar10", tmp_path, "data.augment=false").data, seed=0)

    assert not datamodule.transform.augments


def test_cifar_archive_unpacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    staging = tmp_path / "staging"
    write_cifar_batches(staging / cifar.BATCH_FOLDER)
    archive = tmp_path / "cifar10" / cifar.ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(staging / cifar.BATCH_FOLDER, arcname=cifar.BATCH_FOLDER)
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", hashlib.md5(archive.read_bytes()).hexdigest())

    datamodule = build_datamodule(image_config("cifar10", tmp_path).data, seed=0)

    assert len(datamodule.test) == 12


def test_missing_cifar_batches_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        build_datamodule(image_config("cifar10", tmp_path).data, seed=0)

    message = str(raised.value)
    assert "data_batch_1" in message
    assert str(tmp_path / "cifar10" / cifar.BATCH_FOLDER) in message
    assert "data.download=true" in message


def test_too_few_examples_for_validation(tmp_path: Path) -> None:
    write_idx_set(tmp_path / "mnist", gzipped=True)

    with pytest.raises(ConfigError, match="data.val_size=40"):
        build_datamodule(image_config("mnist", tmp_path, "data.val_size=40").data, seed=0)


# Batch transforms


def test_random_crop_is_shifted_window() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    generator = torch.Generator().manual_seed(0)

    crops = random_crop(images, 2, generator)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))

    assert crops.shape == images.shape
    for crop, source in zip(crops, padded):
        windows = [source[:, top : top + 8, left : left + 8] for top in range(5) for left in range(5)]
        assert any(torch.equal(crop, window) for window in windows)


def test_horizontal_flip_mirrors_or_keeps() -> None:
    images = torch.randn(16, 3, 4, 4)

    flipped = random_horizontal_flip(images, torch.Generator().manual_seed(0))

    kept = [torch.equal(a, b) for a, b in zip(flipped, images)]
    mirrored = [torch.equal(a, b.flip(2)) for a, b in zip(flipped, images)]
    assert all(k or m for k, m in zip(kept, mirrored))
    assert any(kept)
    assert any(mirrored)


def test_augmentation_repeats_with_seed() -> None:
    transform = BatchTransform(scale=1 / 255, crop_padding=4, horizontal_flip=True)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)

    first = transform(images, torch.Generator().manual_seed(3))
    second = transform(images, torch.Generator().manual_seed(3))

    assert torch.equal(first, second)


# MNIST-1D


def test_mnist1d_generated_once_and_cached(tmp_path: Path) -> None:
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()

    generated = load_mnist1d(tmp_path, num_samples=200, seed=42)
    cache = tmp_path / "mnist1d" / "mnist1d-200-seed42.npz"
    cached = load_mnist1d(tmp_path, num_samples=200, seed=42)

    assert cache.is_file()
    assert generated[0].shape == (160, 40)
    assert generated[2].shape == (40, 40)
    assert all(torch.equal(a, b) for a, b in zip(generated, cached))
    assert random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state)


def test_mnist1d_datamodule(tmp_path: Path) -> None:
    cfg = compose_config("data=mnist1d", f"data.root={tmp_path}", "data.num_samples=200", "data.val_size=20")

    datamodule = build_datamodule(cfg.data, seed=0)

    assert (len(datamodule.train), len(datamodule.val), len(datamodule.test)) == (140, 20, 40)
    assert datamodule.input_shape == (40,)
    assert datamodule.num_classes == 10


# Training on the new data sets


def test_conv2_trains_on_cifar_files(tmp_path: Path) -> None:
    from lt_sweeps.imp import LotteryExperiment

    write_cifar_batches(tmp_path / "data" / "cifar10" / cifar.BATCH_FOLDER, count=8)
    cfg = compose_config(
        "data=cifar10",
        "model=conv2",
        f"data.root={tmp_path / 'data'}",
        "data.val_size=8",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "pruning.rounds=2",
        "trainer.log_every_n_steps=1",
        "logger.mode=disabled",
    )

    results = LotteryExperiment(cfg, tmp_path / "run").run()

    assert set(results[1].layer_sparsity) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    assert results[1].layer_sparsity["conv1"] == pytest.approx(0.2, abs=0.01)
    assert results[1].layer_sparsity["fc3"] == pytest.approx(0.1, abs=0.01)
    assert results[1].steps == 2


@pytest.mark.slow
def test_train_py_on_mnist1d(tmp_path: Path) -> None:
    from conftest import run_train

    run_dir = tmp_path / "run"
    completed = run_train(
        run_dir,
        "data=mnist1d",
        f"data.root={tmp_path / 'data'}",
        "data.num_samples=400",
        "data.val_size=40",
        "model.hidden=[32,16]",
        "trainer.max_epochs=1",
        "pruning.rounds=2",
        "logger.mode=disabled",
    )

    rounds = (run_dir / "rounds.json").read_text()
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "data" / "mnist1d" / "mnist1d-400-seed42.npz").is_file()
    assert '"round": 1' in rounds

