"""Overlap of two masks, layer by layer: ``lt-sweep masks A B``.

The Jaccard index of two masks is |alive in both| / |alive in either|: 1 when they keep
the same weights, 0 when they share none. Comparing the tickets of two seeds, two
rounds or two learning rates shows how much of a ticket is determined by its training.

A and B are mask files (``masks/round-<k>.safetensors``), ticket files, or artifact
references such as ``mask-1a2b3c4d:round-3``: downloaded when W&B is online, found
below the working directory among offline runs otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lt_sweeps.config import ConfigError

if TYPE_CHECKING:
    import torch

    from lt_sweeps.masks import Masks

# torch, wandb, lineage and tracking are imported where they are used, because together
# they take seconds to import, and every ``lt-sweep`` command imports this module to
# build its parser.

log = logging.getLogger(__name__)

# Name of the row of all masked weights together.
TOTAL = "all"
COLUMNS = ["layer", "alive_a", "alive_b", "alive_both", "jaccard"]


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return |a and b| / |a or b| of two boolean masks; 1.0 when both are fully pruned."""
    union = int((a | b).sum())
    if union == 0:
        return 1.0
    return int((a & b).sum()) / union


def overlap_rows(a: Masks, b: Masks) -> list[list[Any]]:
    """Return one row per parameter in :data:`COLUMNS` order, then the :data:`TOTAL` row.

    Raises:
        ConfigError: when the masks name different parameters or differ in shape.
    """
    if set(a) != set(b):
        raise ConfigError(
            f"the masks cover different parameters: only in A {sorted(set(a) - set(b))}, "
            f"only in B {sorted(set(b) - set(a))}; compare masks of the same model"
        )
    for name in a:
        if a[name].shape != b[name].shape:
            raise ConfigError(
                f"mask {name} has shape {tuple(a[name].shape)} in A and {tuple(b[name].shape)} in B; "
                "compare masks of the same model"
            )

    import torch

    rows = [
        [name, int(a[name].sum()), int(b[name].sum()), int((a[name] & b[name]).sum()), jaccard(a[name], b[name])]
        for name in a
    ]
    flat_a = torch.cat([a[name].flatten() for name in a])
    flat_b = torch.cat([b[name].flatten() for name in a])
    rows.append([TOTAL, int(flat_a.sum()), int(flat_b.sum()), int((flat_a & flat_b).sum()), jaccard(flat_a, flat_b)])
    return rows


def jaccard_by_layer(a: Masks, b: Masks) -> dict[str, float]:
    """Return the Jaccard index of each parameter's masks, plus :data:`TOTAL` over all weights."""
    return {row[0]: row[-1] for row in overlap_rows(a, b)}


def load_masks(reference: str, mode: str, download_root: Path, project: str | None = None) -> tuple[Masks, Any]:
    """Load a mask file, a ticket file, or a mask artifact; return the masks and the W&B artifact, if any.

    Raises:
        ConfigError: when the file or artifact is missing or is not safetensors, or
            when ``reference`` is a folder.
    """
    from lt_sweeps import lineage

    path = Path(reference).expanduser()
    if path.is_dir():
        raise ConfigError(
            f"mask {reference} is invalid: {path} is a folder; give a mask .safetensors file "
            "(masks/round-<k>.safetensors of a run folder) or an artifact reference such as mask-<run id>:round-<k>"
        )

    artifact = None
    if not path.is_file() and lineage.is_artifact_reference(reference):
        if mode == "online":
            artifact, path = lineage.fetch_online_artifact(reference, None, project, download_root, f"mask {reference}")
        else:
            path = lineage.find_offline_files(reference, Path.cwd(), f"mask {reference}")
    return lineage.read_masks(path, f"mask {reference}"), artifact


def format_rows(rows: list[list[Any]]) -> str:
    """Return the rows as an aligned text table with a header."""
    header = f"{'layer':<20} {'alive A':>10} {'alive B':>10} {'both':>10} {'jaccard':>8}"
    lines = [header]
    for name, alive_a, alive_b, both, value in rows:
        lines.append(f"{name:<20} {alive_a:>10} {alive_b:>10} {both:>10} {value:>8.4f}")
    return "\n".join(lines)


def log_table(rows: list[list[Any]], first: str, second: str, artifacts: list[Any], project: str) -> None:
    """Log the rows as the table ``masks/jaccard`` of a new W&B run of job type ``mask-analysis``."""
    import wandb

    from lt_sweeps import tracking

    mode = tracking.resolve_mode(None)
    # dir is explicit because wandb keeps the first working directory it saw in a process.
    run = wandb.init(
        project=project,
        job_type="mask-analysis",
        config={"mask_a": first, "mask_b": second},
        mode=mode,
        dir=os.getcwd(),
    )
    for artifact in artifacts:
        if artifact is not None:
            run.use_artifact(artifact)
    run.log({"masks/jaccard": wandb.Table(columns=COLUMNS, data=rows)})
    run.summary["masks/jaccard_all"] = rows[-1][-1]
    tracking.finish_run(run, exit_code=0)


def run_command(arguments: argparse.Namespace) -> int:
    """Print the per-layer overlap of two masks and, with ``--log``, log it to W&B."""
    from lt_sweeps import tracking

    mode = tracking.resolve_mode(None)
    download_root = Path(arguments.download_dir)
    first, first_artifact = load_masks(arguments.mask_a, mode, download_root, arguments.project)
    second, second_artifact = load_masks(arguments.mask_b, mode, download_root, arguments.project)

    rows = overlap_rows(first, second)
    print(format_rows(rows))
    if arguments.log:
        log_table(rows, arguments.mask_a, arguments.mask_b, [first_artifact, second_artifact], arguments.project)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``masks`` subcommand."""
    parser = subparsers.add_parser(
        "masks",
        help="per-layer Jaccard overlap of two masks",
        description="Print the per-layer Jaccard overlap of two masks: files, ticket files or mask artifacts.",
    )
    parser.add_argument("mask_a", help="mask file, ticket file, or artifact such as mask-<run id>:round-<k>")
    parser.add_argument("mask_b", help="the mask to compare with")
    parser.add_argument("--log", action="store_true", help="also log the table to a new W&B run")
    parser.add_argument("--project", default="lt-sweeps", help="W&B project of --log and of artifact look-ups")
    parser.add_argument(
        "--download-dir", default="artifacts", help="folder that online artifacts are downloaded to (default: artifacts)"
    )
    parser.set_defaults(handler=run_command)
