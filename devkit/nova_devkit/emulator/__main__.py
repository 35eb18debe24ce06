"""Run the local Bedrock Runtime-compatible endpoint and its S3 until Ctrl-C / SIGTERM.

    python -m nova_devkit.emulator emulator.port=8765 emulator.quota.requests_per_minute=600 \\
        emulator.latency_ms=150 emulator.faults.ThrottlingException=0.1

Prints ``bedrock endpoint: <url>`` and ``s3 endpoint: <url>``; control it at runtime under
``<bedrock endpoint>/_emulator/`` (stats, requests, config, reset, script).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import hydra
from omegaconf import DictConfig

from nova_devkit.conf import CONF_PATH
from nova_devkit.emulator.config import register_emulator_configs, to_emulator_config

register_emulator_configs()


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="emulator")
def main(cfg: DictConfig) -> None:
    """Start both endpoints, print their URLs, serve until a stop signal."""
    from nova_devkit.emulator.launch import local_endpoints

    emu_cfg = to_emulator_config(cfg.emulator)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with local_endpoints(emu_cfg) as eps:
        print(f"bedrock endpoint: {eps.bedrock_url}", flush=True)
        print(f"s3 endpoint: {eps.s3_url}", flush=True)
        print(f"control: {eps.bedrock_url}/_emulator/stats", flush=True)
        print(
            "emulator: deterministic content features, NOT the Nova model (see docs/emulator.md)",
            flush=True,
        )
        stop.wait()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
