"""The control plane: runtime configuration changes and the HTTP API under ``/_emulator/``.

``GET /_emulator/health|stats|requests|config``, ``POST /_emulator/reset``,
``POST /_emulator/config`` (a partial :class:`EmulatorConfig`; see :func:`merge_config`) and
``POST /_emulator/script`` (``{"outcomes": [...], "replace": false}`` or a bare list). The same
operations are methods of :class:`~nova_devkit.emulator.server.EmulatorServer`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nova_devkit.emulator.config import EmulatorConfig, EmulatorLatencyConfig, EmulatorQuotaConfig
from nova_devkit.emulator.faults import check_rates

if TYPE_CHECKING:
    from nova_devkit.emulator.server import EmulatorServer

# Fixed once the server listens.
RUNTIME_KEYS = {"host", "port", "s3_port"}


def merge_config(base: EmulatorConfig, update: Mapping[str, Any]) -> EmulatorConfig:
    """``base`` with a partial update applied; ``faults`` is replaced as a whole, ``quota`` and
    ``latency`` are merged key by key. Unknown keys and wrong types raise ValueError."""
    cfg = copy.deepcopy(base)
    fields = {f.name: f for f in dataclasses.fields(EmulatorConfig)}
    for key, value in update.items():
        if key not in fields:
            raise ValueError(f"unknown emulator config key {key!r}")
        if key in RUNTIME_KEYS and value != getattr(cfg, key):
            raise ValueError(f"{key} cannot change while the server runs")
        current = getattr(cfg, key)
        if isinstance(current, EmulatorQuotaConfig | EmulatorLatencyConfig):
            if not isinstance(value, Mapping):
                raise ValueError(f"{key} must be a mapping")
            sub_fields = {f.name for f in dataclasses.fields(current)}
            for sk, sv in value.items():
                if sk not in sub_fields:
                    raise ValueError(f"unknown key {key}.{sk}")
                setattr(current, sk, float(sv))
        elif key == "batch_record_errors":
            if not isinstance(value, Mapping):
                raise ValueError("batch_record_errors must be a mapping of marker to error")
            cfg.batch_record_errors = {str(k): str(v) for k, v in value.items()}
        elif key == "batch_end_status":
            allowed = ("auto", "PartiallyCompleted", "Failed", "Expired")
            if value not in allowed:
                raise ValueError(f"batch_end_status must be one of {list(allowed)}")
            cfg.batch_end_status = str(value)
        elif key == "faults":
            if not isinstance(value, Mapping):
                raise ValueError("faults must be a mapping of code to probability")
            cfg.faults = check_rates(value)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be a boolean")
            setattr(cfg, key, value)
        elif isinstance(current, int | float) and not isinstance(current, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            setattr(cfg, key, type(current)(value))
        elif isinstance(current, list):
            setattr(cfg, key, [str(v) for v in value])
        else:
            setattr(cfg, key, value)
    return cfg


def control_request(emu: EmulatorServer, method: str, name: str, body: Any) -> tuple[int, Any]:
    """Serve ``<method> /_emulator/<name>`` with the decoded JSON ``body``: (status, answer).

    A bad body or value is a 400 with ``{"message"}``, an unknown control a 404.
    """
    try:
        if method == "GET" and name == "health":
            return 200, {"ok": True}
        if method == "GET" and name == "stats":
            return 200, emu.stats()
        if method == "GET" and name == "requests":
            return 200, [r.to_dict() for r in emu.requests]
        if method == "GET" and name == "config":
            return 200, dataclasses.asdict(emu.config)
        if method == "POST" and name == "reset":
            emu.reset()
            return 200, {"ok": True}
        if method == "POST" and name == "config":
            if not isinstance(body, dict):
                raise ValueError("config body must be a JSON object")
            return 200, dataclasses.asdict(emu.configure(body))
        if method == "POST" and name == "script":
            outcomes = body.get("outcomes") if isinstance(body, dict) else body
            if not isinstance(outcomes, list):
                raise ValueError('script body must be {"outcomes": [...]} or a list')
            if isinstance(body, dict) and body.get("replace"):
                emu.faults.clear_script()
            return 200, {"pending": emu.script(outcomes)}
    except (ValueError, TypeError) as exc:
        return 400, {"message": str(exc)}
    return 404, {"message": f"no control {method} {name}"}
