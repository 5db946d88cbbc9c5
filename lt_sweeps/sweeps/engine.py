"""Import of W&B's open-source sweep engine, the ``sweeps`` package.

sweeps 0.3 declares its pydantic model in the pydantic v1 style, so pydantic 2 warns on
import. The warning concerns that package, not a sweep file, and is hidden here.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Valid config keys have changed in V2")
    warnings.filterwarnings("ignore", message=r"Support for class-based `config` is deprecated")
    import sweeps
    from sweeps import RunState, SweepConfig, SweepRun, next_run, schema_violations_from_proposed_config, stop_runs

__all__ = ["RunState", "SweepConfig", "SweepRun", "next_run", "schema_violations_from_proposed_config", "stop_runs", "sweeps"]
