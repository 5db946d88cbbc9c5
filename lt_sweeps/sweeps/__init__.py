"""W&B sweeps of lottery-ticket runs: sweep files, the agent's command line, the local runner."""
