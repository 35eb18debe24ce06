"""Cheap benchmark media: generate a short clip once with :mod:`nova_devkit.media`, then repeat it
by stream copy (no re-encoding) to reach long durations.

Encoding an hour of AAC audio takes about a minute on one core; remuxing 60 copies of a one-minute
clip takes a second or two and gives a file with the same structure (packets, keyframes, codecs).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any


def repeat_media(src: str | os.PathLike[str], dst: str | os.PathLike[str], times: int) -> Path:
    """Write ``src`` played ``times`` times in a row to ``dst`` (same container, stream copy).

    Every stream is cut at the video's (or first stream's) duration so that copies do not overlap;
    timestamps are shifted by whole copies, so keyframes repeat at the source's interval.
    """
    import av

    src, dst = os.fspath(src), os.fspath(dst)
    with av.open(src, "r") as probe:
        streams = list(probe.streams.video) + list(probe.streams.audio)
        main: Any = streams[0]
        packets = [p for p in probe.demux(main) if p.pts is not None and p.size > 0]
        last = max(packets, key=lambda p: p.pts)
        period_s = float((last.pts + (last.duration or 0)) * main.time_base)
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".mp3": "mp3"}.get(
        Path(dst).suffix.lower()
    )
    with av.open(src, "r") as inp, av.open(dst, "w", format=fmt) as out:
        ins = list(inp.streams.video) + list(inp.streams.audio)
        mapping: dict[int, Any] = {s.index: out.add_stream_from_template(s) for s in ins}
        for rep in range(times):
            inp.seek(0)
            packet: Any
            for packet in inp.demux(*ins):
                if packet.pts is None or packet.size == 0:
                    continue
                tb: Fraction = packet.time_base
                if float(packet.pts * tb) >= period_s:
                    continue
                shift = round(rep * period_s / tb)
                packet.pts += shift
                if packet.dts is not None:
                    packet.dts += shift
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    return Path(dst)


def media_seconds(path: str | os.PathLike[str]) -> float:
    """Duration by the packets' timestamps (what the segmenters see)."""
    import av

    end = 0.0
    with av.open(os.fspath(path), "r") as inp:
        streams = list(inp.streams.video) + list(inp.streams.audio)
        for packet in inp.demux(*streams):
            if packet.pts is None:
                continue
            t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = max(end, t)
    return end
