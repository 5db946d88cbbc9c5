"""Masks and tickets that travel between runs: transfer in, ticket artifact out.

``pruning.mask_artifact`` names the mask that round 0 starts from instead of the dense
network, to train the ticket of an earlier run (another seed, optimizer or data set):

* a local file: ``masks/round-3.safetensors`` of a run folder, or a ``ticket.safetensors``;
* online, a W&B artifact ``<name>:<alias>`` such as ``mask-1a2b3c4d:round-3``, declared
  with ``run.use_artifact`` so that W&B's lineage graph links the two runs;
* offline, the same ``mask-<run id>:round-<k>`` (or ``:latest``, or ``ticket-<run id>``)
  names the files of an earlier run found below the working directory.

Only safetensors files are read. Pickle and ``torch.save`` files are rejected without
being opened by any unpickler, because loading them can run arbitrary code.

The final ticket of a run is saved as ``ticket.safetensors`` and logged as the
artifact ``ticket-<run id>``. ``load_ticket(path)`` turns it back into a plain model.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import wandb
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError, safe_open
from torch import nn

from lt_sweeps.config import ConfigError, to_plain_dict
from lt_sweeps.masks import Masks, apply_masks, remaining_fraction
from lt_sweeps.models import build_model
from lt_sweeps.storage import save_tensors

log = logging.getLogger(__name__)

TICKET_FORMAT = "lt-sweeps-ticket/1"
TICKET_FILE = "ticket.safetensors"

# Prefixes of the tensors in a ticket file.
TRAINED_PREFIX = "trained/"
INIT_PREFIX = "init/"
MASK_PREFIX = "mask/"

# ``mask-<run id>:<alias>`` or ``ticket-<run id>:<alias>``, with an optional entity/project/ path.
ARTIFACT_REFERENCE = re.compile(r"^(?:[\w.-]+/){0,2}(?P<kind>mask|ticket)-(?P<run_id>[\w-]+):(?P<alias>[\w.-]+)$")

# Any W&B artifact reference: [entity/][project/]name:alias.
ANY_ARTIFACT_REFERENCE = re.compile(r"^(?:[\w.-]+/){0,2}[\w.-]+:[\w.-]+$")

# Folders never searched for offline runs.
SKIPPED_FOLDERS = {".git", ".venv", "venv", "node_modules", "__pycache__", "files", "logs", "tmp"}
MAX_SEARCH_DEPTH = 6


@dataclass
class MaskSource:
    """A mask to start round 0 from, with the W&B artifact it came from when online."""

    reference: str
    masks: Masks
    artifact: Any = None


def read_safetensors(path: Path, label: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor and the metadata of a safetensors file, never unpickling anything.

    ``label`` names the file's source in error messages, for example
    ``pruning.mask_artifact=mask-1a2b3c4d:round-3``.

    Raises:
        ConfigError: when the file is missing or is not a safetensors file (a pickle,
            a ``torch.save`` zip, anything else).
    """
    if not path.is_file():
        raise ConfigError(f"{label} is invalid: file {path} not found")

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ConfigError(
            f"{label} is invalid: {path} is not a safetensors file ({error}); "
            "pickle and torch.save files are rejected because loading them can run code, "
            "so save masks with safetensors.torch.save_file"
        ) from None
    return tensors, metadata


def read_masks(path: Path, label: str) -> Masks:
    """Read a mask file (parameter name -> tensor) or the masks of a ticket file, as booleans.

    Entries of 1 (or True) are alive. ``label`` names the file's source in error messages.

    Raises:
        ConfigError: when a tensor contains a value other than 0 and 1, such as a
            fractional soft mask, which magnitude pruning cannot continue from.
    """
    tensors, _ = read_safetensors(path, label)
    if any(name.startswith(MASK_PREFIX) for name in tensors):
        tensors = {name.removeprefix(MASK_PREFIX): tensor for name, tensor in tensors.items() if name.startswith(MASK_PREFIX)}

    for name, tensor in tensors.items():
        if tensor.dtype != torch.bool and not bool(((tensor == 0) | (tensor == 1)).all()):
            raise ConfigError(
                f"{label} is invalid: mask {name} contains values other than 0 and 1, "
                "save masks as bool tensors (True where a weight is alive)"
            )
    return {name: tensor != 0 for name, tensor in tensors.items()}


def check_masks(masks: Masks, parameters: dict[str, torch.Tensor], reference: str) -> None:
    """Raise ConfigError unless ``masks`` has exactly the prunable parameters' names and shapes."""
    missing = sorted(set(parameters) - set(masks))
    unexpected = sorted(set(masks) - set(parameters))
    if missing or unexpected:
        raise ConfigError(
            f"pruning.mask_artifact={reference} does not fit the model: "
            f"missing masks {missing}, unexpected masks {unexpected}; "
            "use a mask of the same model and pruning.prune_bias"
        )

    for name, parameter in parameters.items():
        if masks[name].shape != parameter.shape:
            raise ConfigError(
                f"pruning.mask_artifact={reference} does not fit the model: mask {name} has shape "
                f"{tuple(masks[name].shape)} but the parameter has {tuple(parameter.shape)}; "
                "use a mask of a run with the same model.hidden and data"
            )


def is_artifact_reference(value: str) -> bool:
    """Return whether ``value`` reads as a W&B artifact reference ``[entity/][project/]name:alias``."""
    return ANY_ARTIFACT_REFERENCE.match(value) is not None


def find_offline_files(reference: str, search_root: Path, label: str) -> Path:
    """Return the file that an artifact reference names among the offline runs below ``search_root``.

    ``mask-<id>:round-<k>`` is ``masks/round-<k>.safetensors`` of the run folder that
    contains ``wandb/offline-run-*-<id>``; ``:latest`` is its last round;
    ``ticket-<id>:<alias>`` is its ``ticket.safetensors``. ``label`` names the
    reference's source in error messages.

    Raises:
        ConfigError: when no such run or file exists.
    """
    match = ARTIFACT_REFERENCE.match(reference)
    if match is None:
        raise ConfigError(
            f"{label} is invalid: give a safetensors file path or "
            "an artifact such as mask-<run id>:round-<k>"
        )

    run_id = match["run_id"]
    run_folder = find_run_folder(run_id, search_root)
    if run_folder is None:
        raise ConfigError(
            f"{label} is invalid: no offline run {run_id} found below {search_root}; "
            "run from the folder that contains its outputs, or give the mask file path"
        )

    if match["kind"] == "ticket":
        return run_folder / TICKET_FILE

    alias = match["alias"]
    if alias == "latest":
        rounds = sorted(run_folder.glob("masks/round-*.safetensors"), key=lambda path: int(path.stem.split("-")[1]))
        if rounds:
            return rounds[-1]
    elif re.fullmatch(r"round-\d+", alias):
        return run_folder / "masks" / f"{alias}.safetensors"
    raise ConfigError(
        f"{label} is invalid: offline, the alias must be round-<k> or latest "
        f"and the run folder {run_folder} must contain the mask"
    )


def find_run_folder(run_id: str, search_root: Path) -> Path | None:
    """Return the Hydra run folder whose ``wandb/`` contains the run ``run_id``, or None."""
    pattern = re.compile(rf"^(offline-)?run-\d{{8}}_\d{{6}}-{re.escape(run_id)}$")
    for folder, subfolders, _ in os.walk(search_root):
        depth = len(Path(folder).relative_to(search_root).parts)
        if Path(folder).name == "wandb":
            for name in subfolders:
                if pattern.match(name):
                    return Path(folder).parent
        subfolders[:] = [
            name
            for name in subfolders
            if depth < MAX_SEARCH_DEPTH and name not in SKIPPED_FOLDERS and not name.startswith(".")
        ]
    return None


def fetch_online_artifact(
    reference: str, entity: str | None, project: str | None, download_root: Path, label: str
) -> tuple[Any, Path]:
    """Download a W&B artifact and return it with its single safetensors file.

    NOTE: needs a W&B server, so no test here runs this path.
    """
    api = wandb.Api(overrides={"entity": entity, "project": project})
    try:
        artifact = api.artifact(reference)
        folder = Path(artifact.download(root=str(download_root / reference.replace("/", "_").replace(":", "_"))))
    except (wandb.errors.CommError, ValueError) as error:
        raise ConfigError(f"{label} is invalid: artifact not found or not readable ({error})") from None

    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise ConfigError(
            f"{label} is invalid: expected one .safetensors file in the artifact, found {len(files)}"
        )
    return artifact, files[0]


def load_start_masks(
    cfg: DictConfig, parameters: dict[str, torch.Tensor], mode: str, output_dir: Path, search_root: Path | None = None
) -> MaskSource | None:
    """Load and check the mask of ``pruning.mask_artifact``, or return None when it is unset.

    A path to an existing file is read directly. Otherwise the value is an artifact
    reference: downloaded when ``mode`` is online, found below ``search_root`` (the
    working directory by default) when offline or disabled.

    Raises:
        ConfigError: when the file is missing, is not safetensors, or does not fit the model.
    """
    reference = cfg.pruning.get("mask_artifact")
    if not reference:
        return None

    label = f"pruning.mask_artifact={reference}"
    artifact = None
    path = Path(reference).expanduser()
    if not path.is_file():
        if not is_artifact_reference(reference):
            raise ConfigError(f"{label} is invalid: file {path} not found")
        if mode == "online":
            artifact, path = fetch_online_artifact(
                reference, cfg.logger.entity, cfg.logger.project, output_dir / "artifacts", label
            )
        else:
            path = find_offline_files(reference, search_root or Path.cwd(), label)

    masks = read_masks(path, label)
    check_masks(masks, parameters, reference)
    log.info("round 0 starts from mask %s (%s), %.1f%% of weights remaining", reference, path, 100 * remaining_fraction(masks))
    return MaskSource(reference, masks, artifact)


def declare_use(run: Any, source: MaskSource | None) -> None:
    """Record the transferred mask as an input of ``run``, so W&B links the two runs.

    NOTE: offline, wandb cannot call ``use_artifact``, so an offline run that starts
    from another run's mask carries the link only in its config value
    ``pruning.mask_artifact``.
    """
    if source is not None and source.artifact is not None:
        run.use_artifact(source.artifact)


def artifact_metadata(cfg: DictConfig, result: Any, config_digest: str) -> dict[str, Any]:
    """Return the metadata of a mask or ticket artifact: round, remaining, sparsity, digest, names."""
    return {
        "round": result.round,
        "remaining": result.remaining,
        "layer_sparsity": result.layer_sparsity,
        "config_digest": config_digest,
        "data": cfg.data.name,
        "model": cfg.model.name,
    }


def save_ticket(
    path: Path,
    model_config: dict[str, Any],
    trained: dict[str, torch.Tensor],
    init: dict[str, torch.Tensor],
    masks: Masks,
    metadata: dict[str, Any],
) -> None:
    """Write a ticket file: trained weights, rewind weights, masks, and what builds the model.

    ``model_config`` contains ``build_model``'s arguments: the ``model`` config group plus
    ``in_features`` and ``num_classes``.
    """
    tensors = {TRAINED_PREFIX + name: tensor for name, tensor in trained.items()}
    tensors.update({INIT_PREFIX + name: tensor for name, tensor in init.items()})
    tensors.update({MASK_PREFIX + name: mask for name, mask in masks.items()})
    text_metadata = {"format": TICKET_FORMAT, "model": json.dumps(model_config), "info": json.dumps(metadata)}
    save_tensors(path, tensors, metadata=text_metadata)


def load_ticket(path: str | Path, weights: str = "trained") -> nn.Module:
    """Build the plain network of a ticket file with its masked weights, in eval mode.

    ``weights="trained"`` loads the weights of the best validation pass of the ticket's
    last round; ``weights="init"`` loads the rewind point, to train the ticket again.
    Pruned weights are exactly zero either way.

    Example::

        model = lt_sweeps.lineage.load_ticket("outputs/2026-12-04/20-03-34/ticket.safetensors")

    Raises:
        ConfigError: when the file is missing, is not a safetensors ticket, or ``weights`` is unknown.
    """
    if weights not in ("trained", "init"):
        raise ConfigError(f"weights={weights!r} is invalid: use 'trained' or 'init'")

    path = Path(path)
    tensors, metadata = read_safetensors(path, f"ticket file {path}")
    if metadata.get("format") != TICKET_FORMAT:
        raise ConfigError(f"{path} is not a ticket file: its metadata has no format {TICKET_FORMAT!r}")

    model_config = json.loads(metadata["model"])
    model = build_model(OmegaConf.create(model_config["model"]), model_config["in_features"], model_config["num_classes"])
    prefix = TRAINED_PREFIX if weights == "trained" else INIT_PREFIX
    state = {name.removeprefix(prefix): tensor for name, tensor in tensors.items() if name.startswith(prefix)}
    model.load_state_dict(state)

    parameters = dict(model.named_parameters())
    masks = {name.removeprefix(MASK_PREFIX): mask for name, mask in tensors.items() if name.startswith(MASK_PREFIX)}
    apply_masks(parameters, masks)
    return model.eval()


def log_ticket(
    run: Any,
    cfg: DictConfig,
    output_dir: Path,
    result: Any,
    trained: dict[str, torch.Tensor],
    init: dict[str, torch.Tensor],
    masks: Masks,
    input_shape: tuple[int, int],
    config_digest: str,
) -> Path:
    """Save the run's final ticket to ``ticket.safetensors`` and log it as ``ticket-<run id>``.

    ``input_shape`` is (in_features, num_classes) of the network. Returns the file path.
    """
    path = output_dir / TICKET_FILE
    model_config = {"model": to_plain_dict(cfg)["model"], "in_features": input_shape[0], "num_classes": input_shape[1]}
    metadata = artifact_metadata(cfg, result, config_digest)
    masks = {name: mask.cpu() for name, mask in masks.items()}
    save_ticket(path, model_config, trained, init, masks, metadata)

    artifact = wandb.Artifact(f"ticket-{run.id}", type="ticket", metadata=metadata)
    artifact.add_file(str(path), name=TICKET_FILE)
    run.log_artifact(artifact, aliases=["latest", f"round-{result.round}"])
    log.info(
        "ticket of round %d (%.1f%% of weights remaining) saved to %s; load it with lt_sweeps.lineage.load_ticket",
        result.round,
        100 * remaining_fraction(masks),
        path,
    )
    return path

