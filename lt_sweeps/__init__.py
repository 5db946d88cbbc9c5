"""lt-sweeps: lottery-ticket experiments with Hydra, PyTorch Lightning and W&B sweeps."""

__version__ = "0.1.0"
