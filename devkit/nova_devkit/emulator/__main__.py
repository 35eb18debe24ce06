"""Run the local Bedrock Runtime-compatible endpoint and its S3 until Ctrl-C / SIGTERM.

    python -m nova_devkit.emulator emulator.port=8765 emulator.quota.requests_per_minute=600 \\
        emulator.latency_ms=150 emulator.faults.ThrottlingException=0.1

Prints ``bedrock endpoint: <url>`` and ``s3 endpoint: <url>``; control it at runtime under
``<bedrock endpoint>/_emulator/`` (stats, requests, config, reset, script).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import hydra
from omegaconf import DictConfig

from nova_devkit.conf import CONF_PATH
from nova_devkit.emulator.config import register_emulator_configs, to_emulator_config
from pipelines.core.errors import ConfigError

register_emulator_configs()

# Exit codes: 0 stopped by a signal or Ctrl-C (at any moment, starting included), 2 a setting
# that cannot be served (a port in use, a host that is not loopback without allow_remote).
EXIT_CONFIG = 2


class _Stop(BaseException):
    """Raised in the main thread by the first SIGTERM / SIGINT: unwinds whatever it is doing
    (starting the servers included) through the ``with`` blocks that stop them."""


def _install_stop_signals() -> threading.Event:
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return  # already unwinding: let the clean-up finish
        stopping.set()
        raise _Stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return stopping


@hydra.main(version_base="1.3", config_path=CONF_PATH, config_name="emulator")
def main(cfg: DictConfig) -> None:
    """Start both endpoints, print their URLs, serve until a stop signal."""
    stopping = _install_stop_signals()
    try:
        _serve(cfg, stopping)
    except _Stop:
        pass
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)
    print("stopped", flush=True)


def _serve(cfg: DictConfig, stopping: threading.Event) -> None:
    from nova_devkit.emulator.launch import local_endpoints

    emu_cfg = to_emulator_config(cfg.emulator)
    with local_endpoints(emu_cfg) as eps:
        if emu_cfg.allow_remote:
            print(
                f"warning: listening on {emu_cfg.host} (emulator.allow_remote=true): the endpoint "
                "and its control API have no authentication",
                flush=True,
            )
        if emu_cfg.create_buckets:
            s3 = eps.s3_client()
            for name in emu_cfg.create_buckets:
                s3.create_bucket(Bucket=name)
            print(f"buckets: {', '.join(emu_cfg.create_buckets)}", flush=True)
        print(f"bedrock endpoint: {eps.bedrock_url}", flush=True)
        print(f"s3 endpoint: {eps.s3_url}", flush=True)
        print(f"control: {eps.bedrock_url}/_emulator/stats", flush=True)
        print(
            "emulator: deterministic content features, NOT the Nova model (see docs/emulator.md)",
            flush=True,
        )
        stopping.wait()


if __name__ == "__main__":
    main()
