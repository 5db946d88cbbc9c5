"""Files of a run: tensors as safetensors and results as JSON, each written atomically.

A file is written beside its final path and renamed into place, so an interrupted run
leaves either the previous complete file or none, never half of one. safetensors files
hold only tensors, so loading one can never run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _replace_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (moved to the CPU, made contiguous) to a safetensors file."""
    prepared = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    _replace_atomically(path, lambda temporary: save_file(prepared, temporary, metadata=metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file onto the CPU."""
    return load_file(str(path))


def save_json(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON."""

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(value, stream, indent=2)
            stream.write("\n")

    _replace_atomically(path, write)
