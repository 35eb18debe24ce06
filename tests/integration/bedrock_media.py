"""Test media generated at test time (no committed binaries) and helpers for the client tests."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pipelines.config.schema import BedrockConfig

BUCKET = "nova-client-tests"


def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: int = 64) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), color)
    ImageDraw.Draw(img).rectangle((size // 4, size // 4, size // 2, size // 2), fill=(0, 0, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (10, 120, 40)).save(buf, format="JPEG")
    return buf.getvalue()


def audio_file(tmp: Path, seconds: float = 2.0, ext: str = "wav") -> Path:
    from nova_devkit.media.av import make_tone_audio

    return Path(make_tone_audio(tmp / f"clip.{ext}", seconds))


def video_file(tmp: Path, seconds: float = 3.0, name: str = "clip.mp4") -> Path:
    from nova_devkit.media.av import make_video

    return Path(make_video(tmp / name, seconds, fps=5, size=(64, 48), gop=5))


def ensure_bucket(s3: Any, bucket: str = BUCKET) -> str:
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    return bucket


def bedrock_config(emu: Any, **overrides: Any) -> BedrockConfig:
    cfg = BedrockConfig(
        endpoint_url=emu.bedrock_url,
        s3_endpoint_url=emu.s3_url,
        s3_staging_uri=f"s3://{BUCKET}/staging",
        async_poll_min_s=0.05,
        async_poll_max_s=0.2,
        async_timeout_s=60.0,
        base_backoff_s=0.01,
        max_backoff_s=0.05,
        read_timeout_s=30.0,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def _get(rec: Any, name: str) -> Any:
    return rec.get(name) if isinstance(rec, dict) else getattr(rec, name, None)


def recorded_bodies(server: Any) -> list[dict[str, Any]]:
    """JSON bodies of the requests the local endpoint received, oldest first."""
    out = []
    for rec in list(server.requests):
        body = _get(rec, "body")
        if body is None:
            continue
        if isinstance(body, bytes | bytearray | str):
            try:
                body = json.loads(body)
            except ValueError:
                continue
        if isinstance(body, dict):
            out.append(body)
    return out
