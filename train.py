"""Run one lottery-ticket experiment: ``python train.py [Hydra overrides]``.

Examples::

    python train.py
    python train.py pruning.rate=0.3 optimizer.lr=3e-3 model.hidden=[500,200]
    python train.py -m pruning.rate=0.1,0.2 seed=0,1,2
"""

import sys

import hydra
from omegaconf import DictConfig

from lt_sweeps.cli import main, run_job
from lt_sweeps.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> float:
    return run_job(cfg)


if __name__ == "__main__":
    sys.exit(main(train))
