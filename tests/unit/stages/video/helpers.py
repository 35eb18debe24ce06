"""Shared by the video tests: run the stage on a file, and look inside a segment's mp4."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.stages._decode_common import decoded_rows
from pipelines.stages.segment_video import segment_video
from pipelines.stages.video.plan import VideoCutPlan

EMB = EmbeddingConfig()


def run(path: Path | str, **seg: Any) -> tuple[list[dict[str, Any]], list[VideoCutPlan]]:
    plans: list[VideoCutPlan] = []
    asset = {"asset_id": "v1", "uri": str(path), "modality": "video"}
    decoded = segment_video(asset, SegmentationConfig(**seg), EMB, on_plan=plans.append)
    rows = list(decoded_rows(asset, decoded))
    return rows, plans


def inspect(data: bytes) -> dict[str, Any]:
    """Decode an mp4 segment: demuxer, frame count, first/last frame time, height, audio secs."""
    import av

    with av.open(io.BytesIO(data), "r") as c:
        times = [f.time for f in c.decode(video=0)]
        height = c.streams.video[0].height
        audio_s = None
        if c.streams.audio:
            c.seek(0)
            n = rate = 0
            for f in c.decode(audio=0):
                n += f.samples
                rate = f.sample_rate
            audio_s = n / rate
        c.seek(0)
        first_packet = next((p for p in c.demux(video=0) if p.size), None)
        return {
            "demuxer": str(c.format.name),
            "frames": len(times),
            "first": times[0],
            "span": times[-1] - times[0] + 0.1,  # 10 fps sources
            "height": height,
            "audio_s": audio_s,
            "first_packet": bytes(first_packet) if first_packet is not None else b"",
        }
