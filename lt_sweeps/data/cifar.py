"""CIFAR-10 from its python batches (``cifar-10-batches-py``).

The batches are pickles. They are read with an unpickler that only allows the numpy
types an array needs, so a tampered file raises DataFileError instead of running code.
"""

from __future__ import annotations

import logging
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from lt_sweeps.data.files import DataFileError, download, missing_files_error, verify_md5

log = logging.getLogger(__name__)

BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# NOTE: the commonly published MD5 of the official archive, which torchvision's CIFAR10
# class also lists. No installed code or document here states it.
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
IMAGE_SHAPE = (3, 32, 32)

# Globals a pickled numpy array refers to: array and dtype reconstruction under numpy
# 1.x and 2.x module names, and the bytes encoding that protocol 2 pickles of
# Python 3 bytes use. Nothing else may be loaded.
ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that loads builtin containers and numpy arrays, and rejects any other global."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch: uint8 images (N x 3 x 32 x 32) and int64 labels.

    Raises:
        DataFileError: when the file is not a CIFAR-10 batch or refers to a global other
            than the numpy types an array needs.
    """
    try:
        with path.open("rb") as stream:
            # The official batches were pickled by Python 2; "bytes" keeps their str keys as bytes.
            content = ArrayOnlyUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, OSError) as error:
        raise DataFileError(f"{path} is not a CIFAR-10 python batch ({error}): put the official file there") from None

    if not isinstance(content, dict):
        raise DataFileError(f"{path} is not a CIFAR-10 python batch (no dict inside): put the official file there")
    entries = {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}

    images = entries.get("data")
    labels = np.asarray(entries.get("labels", []), dtype=np.int64)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise DataFileError(f"{path} has no N x 3072 uint8 'data' array: put the official file there")
    if len(labels) != len(images) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise DataFileError(f"{path} has labels that do not match its images: put the official file there")

    # Each row contains the red, green and blue planes of one image in turn.
    return images.reshape(-1, *IMAGE_SHAPE), labels


def extract_archive(archive: Path, folder: Path) -> None:
    """Unpack the batch folder of the official archive into ``folder``.

    Only regular files under ``cifar-10-batches-py/`` are extracted, through tarfile's
    ``data`` filter, so no member can write outside ``folder``.
    """
    if not hasattr(tarfile, "data_filter"):
        # Python releases before 3.10.12 and 3.11.4 lack the filter that keeps members inside folder.
        raise DataFileError(
            f"this Python cannot unpack {archive} safely: unpack it by hand into {folder}, or use Python 3.11.4 or later"
        )

    log.info("unpacking %s", archive)
    try:
        with tarfile.open(archive, "r:gz") as bundle:
            members = [
                member
                for member in bundle.getmembers()
                if member.isfile() and member.name.startswith(f"{BATCH_FOLDER}/")
            ]
            bundle.extractall(folder, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataFileError(f"{archive} cannot be unpacked ({error}): delete it and fetch it again") from None


def locate_batches(root: Path, allow_download: bool) -> Path:
    """Return the batch folder under ``root/cifar10``, unpacking or downloading the archive if needed.

    Raises:
        DataFileError: when batches are missing and neither the archive nor a download
            can provide them.
    """
    folder = root / "cifar10"
    batches = folder / BATCH_FOLDER
    names = (*TRAIN_BATCHES, TEST_BATCH)
    missing = [batches / name for name in names if not (batches / name).is_file()]
    if not missing:
        return batches

    archive = folder / ARCHIVE
    if not archive.is_file() and allow_download:
        download([ARCHIVE_URL], archive, ARCHIVE_MD5)
    if archive.is_file():
        verify_md5(archive, ARCHIVE_MD5)
        extract_archive(archive, folder)
        missing = [batches / name for name in names if not (batches / name).is_file()]

    if missing:
        raise missing_files_error("cifar10", missing, batches)
    return batches


def load_cifar10(root: Path, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load CIFAR-10 from ``root/cifar10/cifar-10-batches-py/``.

    Returns:
        Training images (uint8, N x 3 x 32 x 32), training labels (int64), test images
        and test labels.

    Raises:
        DataFileError: when a batch is missing or invalid.
    """
    batches = locate_batches(root, allow_download)
    train = [read_batch(batches / name) for name in TRAIN_BATCHES]
    test_images, test_labels = read_batch(batches / TEST_BATCH)

    log.info("read cifar10 from %s", batches)
    return (
        torch.from_numpy(np.concatenate([images for images, _ in train])),
        torch.from_numpy(np.concatenate([labels for _, labels in train])),
        torch.from_numpy(test_images.copy()),
        torch.from_numpy(test_labels),
    )
