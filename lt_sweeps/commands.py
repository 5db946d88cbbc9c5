"""The ``lt-sweep`` command line: one subcommand per module listed in SUBCOMMAND_MODULES.

Each listed module defines ``register(subparsers)``, which adds its parser and sets
``handler`` to a function that takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lt_sweeps.config import ConfigError

USAGE_ERROR_EXIT_CODE = 2

SUBCOMMAND_MODULES: list[str] = [
    "lt_sweeps.sweeps.command",
    "lt_sweeps.mask_analysis",
    "lt_sweeps.report",
]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``lt-sweep`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="lt-sweep", description="Sweeps, masks and reports of lottery-ticket runs.")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``lt-sweep``; bad input prints one line to stderr and returns 2."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if arguments.quiet else logging.INFO, format="%(message)s")
    try:
        return arguments.handler(arguments)
    except ConfigError as error:
        print(f"lt-sweep: error: {error}", file=sys.stderr)
        return USAGE_ERROR_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
