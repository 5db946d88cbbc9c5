"""Config composition, validation and the one-line errors of train.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from lt_sweeps.config import ConfigError, control_names, validate_config
from lt_sweeps.tracking import config_digest, resolve_mode

from conftest import compose_config, run_train


def test_defaults_compose_and_validate() -> None:
    cfg = compose_config()
    validate_config(cfg)

    assert cfg.model.hidden == [300, 100]
    assert cfg.optimizer.lr == 1.2e-3
    assert cfg.data.batch_size == 60
    assert cfg.pruning.rate == 0.2


def test_default_rounds_reach_fifteen_percent() -> None:
    cfg = compose_config()

    assert (1 - cfg.pruning.rate) ** (cfg.pruning.rounds - 1) <= 0.15


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pruning.rate=1.0", "pruning.rate=1.0 is invalid"),
        ("pruning.rate=0", "pruning.rate=0.0 is invalid"),
        ("pruning.rate=-0.2", "pruning.rate=-0.2 is invalid"),
        ("pruning.output_rate=1.5", "pruning.output_rate=1.5 is invalid"),
        ("pruning.rounds=0", "pruning.rounds=0 is invalid"),
        ("optimizer.lr=0", "optimizer.lr=0.0 is invalid"),
        ("optimizer.lr=-1e-3", "optimizer.lr=-0.001 is invalid"),
        ("model.hidden=[]", "model.hidden=[] is invalid"),
        ("model.hidden=[300,0]", "model.hidden=[300, 0] is invalid"),
        ("model.activation=swish", "model.activation='swish' is invalid"),
        ("pruning.control=bogus", "pruning.control='bogus' is invalid"),
        ("logger.mode=cloud", "logger.mode='cloud' is invalid"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 is invalid"),
        ("data.batch_size=0", "data.batch_size=0 is invalid"),
        ("+pruning.ratee=0.3", "unknown config key pruning.ratee"),
        ("+foo=1", "unknown config key foo"),
        ("+data.root=/tmp/x", "data=digits has no key data.root: it is a key of data=mnist1d, mnist"),
        ("seed=-1", "seed=-1 is invalid"),
        ("seed=4294967296", "seed=4294967296 is invalid"),
        ("trainer.devices=8", "trainer.devices=8 is invalid"),
        ("trainer.accelerator=tpu", "trainer.accelerator='tpu' is invalid"),
        ("pruning.rewind=late", "pruning.rewind='late' is invalid"),
        ("pruning.rewind_step=-1", "pruning.rewind_step=-1 is invalid"),
        ("pruning.scope=network", "pruning.scope='network' is invalid"),
        ("pruning.conv_rate=1.0", "pruning.conv_rate=1.0 is invalid"),
        ("pruning.schedule=cubic", "pruning.schedule='cubic' is invalid"),
        ("pruning.control=[reinit,shuffle]", "pruning.control='shuffle' is invalid"),
    ],
)
def test_invalid_value_rejected(override: str, message: str) -> None:
    cfg = compose_config(override)

    with pytest.raises(ConfigError) as raised:
        validate_config(cfg)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "names"),
    [(None, []), ("none", []), ("reinit", ["reinit"]), (["reinit"], ["reinit"])],
)
def test_control_names(value, names: list[str]) -> None:
    assert control_names(value) == names


def test_digest_ignores_logger() -> None:
    first = compose_config("logger.name=a")
    second = compose_config("logger.name=b", "logger.mode=disabled")

    assert config_digest(first) == config_digest(second)


def test_digest_changes_with_rate() -> None:
    assert config_digest(compose_config("pruning.rate=0.3")) != config_digest(compose_config())


def test_mode_offline_without_credentials() -> None:
    assert resolve_mode(None) == "offline"


def test_mode_online_with_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)

    assert resolve_mode(None) == "online"


def test_mode_online_with_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))

    assert resolve_mode(None) == "online"


def test_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "dryrun")

    assert resolve_mode(None) == "offline"


def test_explicit_mode_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)

    assert resolve_mode("disabled") == "disabled"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pruning.rate=1.0", "error: pruning.rate=1.0 is invalid: use a fraction in (0, 1)"),
        ("data=imagenet", "error: data=imagenet is invalid: allowed values are cifar10, digits, fashion_mnist, mnist, mnist1d"),
        ("model=resnet9", "error: model=resnet9 is invalid: allowed values are conv2, conv4, conv6, lenet_300_100, mlp, resnet20, vgg16"),
        ("optimizer.lr=abc", "error: optimizer.lr is invalid"),
        ("pruning.ratee=0.1", "error: unknown config key pruning.ratee"),
        ("data.root=/tmp/x", "error: the chosen data has no key data.root: it is a key of data=mnist1d"),
        ("data.train_size=1700", "error: data.train_size=1700 and data.val_size=300 leave no test examples"),
        pytest.param(
            "trainer.devices=[0]",
            "error: trainer.devices=[0] is invalid when training on the CPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device"),
        ),
        pytest.param(
            "trainer.accelerator=gpu",
            "error: trainer.accelerator=gpu is invalid on this machine",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device"),
        ),
        ("logger.mode=online", "error: logger.mode=online needs W&B credentials"),
    ],
)
def test_bad_input_one_line_exit(tmp_path: Path, override: str, message: str) -> None:
    run_dir = tmp_path / "run"
    started = time.monotonic()
    process = run_train(run_dir, "logger.mode=offline", override)
    elapsed = time.monotonic() - started

    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]
    assert process.stderr.startswith(message), process.stderr
    assert "Traceback" not in process.stdout + process.stderr
    assert not (run_dir / "wandb").exists()
    assert elapsed < 60


@pytest.mark.slow
def test_unreachable_server_falls_back_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) on loopback: nothing listens, so every connection is refused.
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    run_dir = tmp_path / "run"
    process = run_train(
        run_dir, "logger.mode=online", "logger.init_timeout=2", "pruning.rounds=1", "trainer.max_epochs=1", "model.hidden=[16]"
    )

    assert process.returncode == 0, process.stderr[-2000:]
    assert "logging offline instead" in process.stdout
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
