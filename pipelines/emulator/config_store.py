"""Hydra ConfigStore registration for ``python -m jobs.emulator``.

``conf/emulator.yaml`` lists ``emulator_schema`` first in its defaults, so every key under
``emulator:`` (YAML or command line) is checked against
:class:`~pipelines.config.schema.EmulatorConfig`. ``faults`` is a typed ``dict[str, float]``, so
``emulator.faults.ThrottlingException=0.1`` works whether or not the YAML lists the code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.config.schema import EmulatorConfig


@dataclass
class EmulatorJobConfig:
    """The whole configuration of ``python -m jobs.emulator``."""

    emulator: EmulatorConfig = field(default_factory=EmulatorConfig)


_REGISTERED = False


def register_emulator_configs() -> None:
    """Idempotent: register ``emulator_schema`` with Hydra's ConfigStore."""
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="emulator_schema", node=EmulatorJobConfig)
    _REGISTERED = True
