"""Probe an MP4/MOV video from its sample table, touching only keyframes and the first/last GOP.

:func:`probe_from_sample_table` gives the same
:class:`~pipelines.stages.video.probe_result.VideoProbe` as demuxing every packet, or None when
the table cannot be trusted (the caller then demuxes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.stages.video.probe_result import PacketFacts, VideoProbe, make_probe

# The sample-table probe reads each keyframe's packet (one seek each); past this many keyframes
# per packet (intra-only video) demuxing everything is as cheap.
_INDEX_MAX_KEYFRAME_SHARE = 0.25


def _index_arrays(stream: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, sizes, end offsets in the file, keyframe flags) of a stream's sample table."""
    entries = stream.index_entries
    n = len(entries)
    ts = np.empty(n, dtype=np.int64)
    size = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    key = np.empty(n, dtype=bool)
    for i, e in enumerate(entries):
        ts[i] = e.timestamp
        size[i] = e.size
        end[i] = e.pos + e.size
        key[i] = e.is_keyframe
    return ts, size, end, key


def probe_from_sample_table(container: Any, vstream: Any, astream: Any) -> VideoProbe | None:
    """The probe from an MP4/MOV sample table, or None when the table cannot be trusted.

    The table gives every packet's decode time, size and file offset. Presentation times differ
    from decode times when frames are reordered (B-frames), so the keyframes' own packets are
    read (one seek each), and the first and last GOP are demuxed for the earliest and latest
    presentation times. The table is not trusted (None: demux instead) when the file is shorter
    than the samples it lists (truncated), when it does not reach the header's duration
    (fragmented MP4: fragments are indexed as they are read), or when a keyframe's packet is not
    where the table says.
    """
    v_ts, v_size, v_stop, v_key = _index_arrays(vstream)
    if v_ts.size == 0 or not v_key.any():
        return None
    if astream is not None:
        a_ts, a_size, a_stop, _ = _index_arrays(astream)
        if a_ts.size == 0:
            return None
    else:
        a_ts = a_size = a_stop = np.zeros(0, dtype=np.int64)
    file_size = int(container.size or 0)
    if file_size <= 0 or max(int(v_stop.max()), int(a_stop.max(initial=0))) > file_size:
        return None  # truncated: the demux pass measures what is really there
    keys_dts = v_ts[v_key]
    if keys_dts.size > max(16, _INDEX_MAX_KEYFRAME_SHARE * v_ts.size):
        return None
    v_tb = vstream.time_base
    if container.duration:
        covered = float(int(v_ts.max()) * v_tb) - float(container.start_time or 0) / 1e6
        if covered < float(container.duration) / 1e6 - max(2.0, 0.05 * container.duration / 1e6):
            return None  # the table does not cover the file (fragmented MP4)
    keys: list[int] = []
    key_list = keys_dts.tolist()
    last_ts = int(v_ts.max())
    for j, dts in enumerate(key_list):
        # Seek just before the next keyframe: whether the demuxer seeks by decode or by
        # presentation time (MOV seeks by presentation time when frames are reordered), the
        # keyframe found is this one.
        target = key_list[j + 1] - 1 if j + 1 < len(key_list) else last_ts
        container.seek(target, stream=vstream, backward=True, any_frame=False)
        packet = next((p for p in container.demux(vstream) if p.size), None)
        if packet is None or packet.dts != dts or not packet.is_keyframe or packet.pts is None:
            return None
        keys.append(int(packet.pts))
    # Earliest presentation: within the first GOP (leading frames of an open GOP come first).
    container.seek(0)
    v_first: int | None = None
    seen_keys = 0
    for packet in container.demux(vstream):
        if packet.pts is None or not packet.size:
            continue
        if packet.is_keyframe:
            seen_keys += 1
            if seen_keys > 1:
                break
        v_first = packet.pts if v_first is None else min(v_first, packet.pts)
    if v_first is None:
        return None
    # Latest presentation end: demux everything from the last keyframe on (every stream).
    container.seek(int(keys_dts[-1]), stream=vstream, backward=True, any_frame=False)
    v_end = int(v_ts.max())
    a_end = int(a_ts.max()) if a_ts.size else None
    streams = [vstream] + ([astream] if astream is not None else [])
    for packet in container.demux(*streams):
        if packet.pts is None or not packet.size:
            continue
        stop = packet.pts + (packet.duration or 0)
        if packet.stream_index == vstream.index:
            v_end = max(v_end, stop)
        elif a_end is not None:
            a_end = max(a_end, stop)
    # Packet times for byte counts: each video packet is placed in its GOP by shifting its
    # decode time by its keyframe's (presentation - decode) offset, so the bytes between two
    # keyframes' times are exactly the GOPs a stream-copy segment between them carries.
    gop = np.searchsorted(keys_dts, v_ts, side="right") - 1
    shift = np.asarray(keys, dtype=np.int64) - keys_dts
    v_times = v_ts + np.where(gop >= 0, shift[np.maximum(gop, 0)], shift[0])
    packets = PacketFacts(
        v_pts=v_times, v_size=v_size, v_first=min(v_first, min(keys)), v_end=v_end, keys=keys,
        a_pts=a_ts, a_size=a_size, a_end=a_end,
    )  # fmt: skip
    return make_probe(container, vstream, astream, packets)
