"""MNIST and Fashion-MNIST from their IDX files.

An IDX file starts with two zero bytes, a type code, the number of dimensions and one
big-endian 32-bit size per dimension, followed by the values. Files may be gzipped (``.gz``, as distributed) or not.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from lt_sweeps.data.files import DataFileError, download, missing_files_error

log = logging.getLogger(__name__)

# IDX type codes and the numpy types they stand for (big-endian).
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# MD5 sums of the official gzipped files, and the mirrors to fetch them from.
# NOTE: these are the commonly published sums, which torchvision's MNIST and
# FashionMNIST classes also list. No installed code or document here states them.
MD5_SUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file, gzipped when its name ends in ``.gz``.

    Raises:
        DataFileError: when the file is not valid IDX or its size does not match its header.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                content = stream.read()
        else:
            content = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(f"{path} cannot be read ({error}): delete it and put the official file there") from None

    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] not in IDX_TYPES:
        raise DataFileError(f"{path} is not an IDX file (bad header): put the official file there")

    dtype = IDX_TYPES[content[2]]
    dims = content[3]
    header_bytes = 4 + 4 * dims
    if len(content) < header_bytes:
        raise DataFileError(f"{path} is truncated inside its header: put the official file there")

    shape = struct.unpack(f">{dims}I", content[4:header_bytes])
    payload = content[header_bytes:]
    expected = math.prod(shape) * dtype.itemsize
    if len(payload) != expected:
        raise DataFileError(
            f"{path} has {len(payload)} bytes of data but its header {shape} needs {expected}: "
            f"the file is truncated or corrupt, put the official file there"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


def find_idx_file(folder: Path, name: str) -> Path | None:
    """Return ``folder/name`` or ``folder/name.gz``, whichever exists, else None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_files(data: str, folder: Path, allow_download: bool) -> dict[str, Path]:
    """Return the paths of the four IDX files of ``data``, downloading missing ones if allowed.

    Raises:
        DataFileError: when a file is missing and downloads are off, or a download fails.
    """
    paths: dict[str, Path] = {}
    missing: list[Path] = []
    for key, name in IDX_FILES.items():
        path = find_idx_file(folder, name)
        if path is None and allow_download:
            path = folder / f"{name}.gz"
            download([base + path.name for base in MIRRORS[data]], path, MD5_SUMS[data][path.name])
        if path is None:
            missing.append(folder / f"{name}.gz")
        else:
            paths[key] = path

    if missing:
        raise missing_files_error(data, missing, folder)
    return paths


def load_idx_dataset(data: str, root: Path, allow_download: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load ``mnist`` or ``fashion_mnist`` from ``root/<data>/``.

    Returns:
        Training images (uint8, N x 1 x 28 x 28), training labels (int64), test images
        and test labels.

    Raises:
        DataFileError: when a file is missing, corrupt, or images and labels disagree.
    """
    folder = root / data
    paths = locate_files(data, folder, allow_download)
    arrays = {key: read_idx(path) for key, path in paths.items()}

    tensors = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(
                f"{paths[f'{split}_images']} and {paths[f'{split}_labels']} do not match: expected "
                f"N uint8 images of HxW and N labels, got {images.dtype} {images.shape} and {labels.shape}"
            )
        if labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
            raise DataFileError(
                f"{paths[f'{split}_labels']} has labels outside 0-9: put the official file there"
            )
        tensors.append(torch.from_numpy(images.copy()).unsqueeze(1))
        tensors.append(torch.from_numpy(labels.astype(np.int64)))

    log.info("read %s from %s", data, folder)
    return tensors[0], tensors[1], tensors[2], tensors[3]
