"""The emulator's YAML composes against EmulatorConfig; command-line overrides are typed."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from nova_devkit.conf import CONF_MODULE
from nova_devkit.emulator.config import (
    EmulatorConfig,
    register_emulator_configs,
    to_emulator_config,
)
from nova_devkit.emulator.launch import local_endpoints


def load(overrides: list[str]) -> DictConfig:
    register_emulator_configs()
    with initialize_config_module(version_base="1.3", config_module=CONF_MODULE):
        return compose(config_name="emulator", overrides=overrides)


def test_overrides_are_typed() -> None:
    cfg = to_emulator_config(
        load(
            [
                "emulator.port=8765",
                "emulator.quota.requests_per_minute=600",
                "emulator.latency_ms=150",
                "emulator.faults.ThrottlingException=0.1",
            ]
        ).emulator
    )
    assert isinstance(cfg, EmulatorConfig)
    assert (cfg.port, cfg.quota.requests_per_minute, cfg.latency_ms) == (8765, 600.0, 150.0)
    assert cfg.faults["ThrottlingException"] == 0.1 and cfg.faults["MalformedBody"] == 0.0


def test_faults_is_a_typed_dict() -> None:
    cfg = load(["emulator.faults={DroppedConnection: 0.25}"]).emulator
    assert cfg.faults.DroppedConnection == 0.25 and cfg.faults.ThrottlingException == 0.0
    # A key the YAML does not list is added with "+" (the dict is typed, values are floats)...
    added = to_emulator_config(load(["+emulator.faults.NewCode=0.5"]).emulator)
    assert added.faults["NewCode"] == 0.5
    # ... and the emulator itself refuses codes it does not know.
    from nova_devkit.emulator.server import EmulatorServer

    with pytest.raises(ValueError, match="unknown fault code"):
        EmulatorServer(added)
    with pytest.raises(Exception, match="faults"):
        load(["emulator.faults.ThrottlingException=often"])
    with pytest.raises(Exception, match="latency_seconds"):
        load(["emulator.latency_seconds=1"])


def test_yaml_config_starts(tmp_path: Path) -> None:
    cfg = to_emulator_config(load(["emulator.port=0", "emulator.s3_port=0"]).emulator)
    with local_endpoints(cfg) as eps:
        assert eps.bedrock_url.startswith("http://127.0.0.1:")
        assert eps.emulator.stats()["requests"] == 0
