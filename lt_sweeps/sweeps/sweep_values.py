"""Check a sweep's values against the project's config validation before any trial starts.

The caller composes the config once, with the extra overrides. Each ``value``, each
item of ``values`` and the bounds of each bounded distribution are then written as
``wandb agent`` writes them (``name=value`` text) and parsed by Hydra's override parser.
Each value is set on a copy of the config, which :func:`lt_sweeps.config.validate_config`
checks as ``train.py`` does. Setting the key gives what Hydra's composition would give,
because a sweep parameter is always a config key, never a config group. A value that
``train.py`` would reject fails the sweep up front instead of failing its trials one by
one.
"""

from __future__ import annotations

import copy
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lt_sweeps.config import ConfigError, validate_config
from lt_sweeps.sweeps.agent_command import agent_command_args
from lt_sweeps.sweeps.trial import null_text_to_null

# Distributions whose min and max are the smallest and largest value a trial can get.
BOUNDED_BY_VALUE = frozenset(
    {"uniform", "int_uniform", "q_uniform", "log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"}
)


def values_to_check(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """Return (role, value) pairs for one parameter of a sweep: every value a trial can get, or the bounds.

    ``role`` is ``value``, ``min`` or ``max``. Unbounded distributions (normal,
    log_normal, ...) return no pairs. The exponent forms (log_uniform, ...) return none
    either, but W&B's schema in sweeps 0.3 rejects them before this check.
    """
    if "value" in spec:
        return [("value", spec["value"])]
    if "values" in spec:
        return [("value", value) for value in spec["values"]]

    distribution = spec.get("distribution")
    if distribution in BOUNDED_BY_VALUE:
        return [("min", spec["min"]), ("max", spec["max"])]
    return []


def check_sweep_values(parameters: dict[str, dict[str, Any]], source: str, base: DictConfig, overrides: list[str]) -> None:
    """Set every value of ``parameters`` on a copy of ``base`` and validate it as ``train.py`` does.

    ``parameters`` is the sweep's ``parameters`` mapping with W&B's defaults filled in,
    ``source`` names the sweep file in messages, ``base`` is the program's config
    composed with ``overrides``, the extra overrides of every trial. Each value is
    checked with the other keys at their values in ``base``.

    Raises:
        ConfigError: naming the parameter, the value and the reason for the first value
            that ``train.py`` would reject.
    """
    from lt_sweeps.cli import describe_error

    reason = _validation_error(base, [], describe_error)
    if reason is not None:
        override_text = " ".join(overrides) or "(none)"
        raise ConfigError(f"extra overrides {override_text} give an invalid config: {reason}")

    parser = OverridesParser.create()
    for name, spec in parameters.items():
        for role, value in values_to_check(spec):
            arguments = null_text_to_null(agent_command_args({name: value})["args_no_hyphens"], {name: value})
            reason = _validation_error(base, parser.parse_overrides(arguments), describe_error)
            if reason is None:
                continue
            described_value = f"value {value!r}" if role == "value" else f"{role} {value!r}"
            raise ConfigError(f"sweep parameter {name} in {source} has an invalid {described_value}: {reason}")


def _validation_error(base: DictConfig, overrides: list, describe_error) -> str | None:
    try:
        cfg = copy.deepcopy(base)
        for override in overrides:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=False)
        validate_config(cfg)
    except ConfigError as error:
        return str(error)
    except (HydraException, OmegaConfBaseException) as error:
        return describe_error(error)
    except TypeError as error:
        # A null where validate_config compares numbers, for example pruning.rate=null.
        return f"the value has the wrong type ({error})"
    return None
