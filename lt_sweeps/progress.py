"""Round-level progress bar shown below Lightning's per-epoch bar.

The bar reads "round k/N" with the weights remaining and the last test accuracy. It
appears only when stderr is a terminal and the ``lt_sweeps`` logger shows INFO, so
logs written to files or CI, and runs with logging raised to WARNING, keep only the
per-round log line.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from tqdm.auto import tqdm

log = logging.getLogger("lt_sweeps")


class RoundProgress:
    """A tqdm bar over the rounds of one experiment, or nothing when it would not be seen."""

    def __init__(self, rounds: int, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        """Open the bar for ``rounds`` rounds on ``stream``, by default the terminal's stderr.

        ``enabled=None`` shows the bar when stderr is a terminal and INFO is logged.
        """
        self.bar = None
        self.owned_stream = None
        if enabled is None:
            enabled = sys.__stderr__ is not None and sys.__stderr__.isatty() and log.isEnabledFor(logging.INFO)
        if not enabled:
            return

        if stream is None:
            # wandb wraps the write method of sys.stderr and drops tqdm's carriage-return
            # updates, so the bar writes to its own file object on a copy of descriptor 2.
            stream = self.owned_stream = open(os.dup(sys.__stderr__.fileno()), "w", buffering=1)
        self.bar = tqdm(total=rounds, desc="IMP", unit="round", leave=True, file=stream)

    def update(self, result: Any) -> None:
        """Advance the bar by one finished round and show its remaining weights and test accuracy."""
        if self.bar is None:
            return
        self.bar.set_postfix_str(f"{100 * result.remaining:.1f}% remaining, test acc {100 * result.test_acc:.2f}%")
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar, leaving its last state on the terminal; a second call does nothing."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.owned_stream is not None:
            self.owned_stream.close()
            self.owned_stream = None
