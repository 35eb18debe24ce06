"""Cut an audio asset into windows of at most 30 s, each encoded for Nova (mp3, wav or ogg).

Input: any file PyAV (FFmpeg) can demux and decode, by local path, ``file://`` or ``s3://``
(through :func:`pipelines.core.io.open_local`). Output: one segment row per window
(:func:`pipelines.core.rows.segment_row`), produced lazily; or a
:class:`~pipelines.core.errors.RecordError` (``stage="decode"``) for what cannot be read, which
the decode stage turns into a dead-letter row.

How it works (memory is bounded by one window, never by the asset):

1. **Probe** (demux only, no decoding): the packets' timestamps give the exact length of what is
   actually in the file, which fixes ``segment_count`` before the first row is produced. Header
   durations are only estimates for some formats (VBR mp3 without a Xing tag, raw streams), and a
   header that promises more than the packets hold means the file was cut short. When packets
   carry no timestamps at all, a decode pass counts samples (slower, still one window of memory).
2. **Plan** the windows with :func:`plan_windows` (``audio_window_s`` clamped to the API's 30 s
   minus a 50 ms headroom for codec framing, ``audio_overlap_s`` between consecutive windows).
3. **Stream**: decode, resample to mono s16 at 24 kHz (a rate that mp3 and Opus both take; speech
   and music features live well below 12 kHz), keep only the samples of the open window, and
   encode each full window into an in-memory container.

Policies (decided here, tested in ``tests/unit/stages/test_segment_audio.py``):

- A trailing window that adds less than ``MIN_TAIL_S`` (0.5 s) of new audio is merged into the
  previous window when the result stays within the cap, otherwise dropped: at most 0.5 s at the
  very end goes unembedded, instead of paying a whole request for it. An asset shorter than the
  window is always one segment, however short.
- Mono: the model gets one audio input per call; a downmix keeps every channel's content at half
  the bytes.
- Errors before any segment: ``file_not_found``, ``empty_file`` (0 bytes), ``media_corrupt``
  (FFmpeg cannot open or demux it: not media, or a container whose index is missing, e.g. an mp4
  cut before its ``moov``), ``no_audio_stream``, ``codec_unsupported`` (no decoder in this FFmpeg
  build), ``media_empty`` (an audio stream with no samples).
- Errors after some segments: the window being filled gets a dead-letter row (the error carries
  its ``segment_index``, ``start_s``, ``end_s``) with ``media_corrupt`` (decoder error) or
  ``media_truncated`` (decoding stopped short of the planned end by more than
  ``TRUNCATION_TOLERANCE_S``), and the asset stops there.
- A file cut short whose header says how long it should be (mp3 Xing tag, flac STREAMINFO,
  Matroska duration): the windows are planned over the audio the file really holds and all
  embedded; ``segment_count`` has one more slot, filled by a ``media_truncated`` dead-letter row
  spanning ``[readable end, header duration]``. A truncated WAV or Ogg has no such header and
  simply yields the audio it still has.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.modalities.base import part_segments
from pipelines.stages._decode_common import local_source

STAGE = "decode"
# The sync API takes at most 30 s of audio or video per call.
API_MAX_SECONDS = 30.0
# Encoded containers can report a few ms more than their samples (Opus pre-skip: +6.5 ms, mp3
# frame padding), so windows stop this much short of the API's limit.
DURATION_HEADROOM_S = 0.05
MAX_WINDOW_S = API_MAX_SECONDS - DURATION_HEADROOM_S
# A last window adding less new audio than this is merged into the previous one or dropped.
MIN_TAIL_S = 0.5
# How much shorter than planned the decoded audio may end before it counts as truncated.
TRUNCATION_TOLERANCE_S = 1.0

SEGMENT_SAMPLE_RATE = 24000
SEGMENT_LAYOUT = "mono"

# Accepted Nova audio formats -> (container format, encoder, bit rate). There is no libvorbis in
# PyAV's wheels, so "ogg" is Opus in Ogg.
AUDIO_ENCODINGS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", 64_000),
    "wav": ("wav", "pcm_s16le", None),
    "ogg": ("ogg", "libopus", 48_000),
}


# --------------------------------------------------------------------------------------------
# Planning (pure functions, shared with segment_video)


def window_params(window_s: float, overlap_s: float) -> tuple[float, float]:
    """(window, hop) in seconds: the window clamped to ``MAX_WINDOW_S``. The values were checked
    with the rest of the configuration (``validate_segmentation``)."""
    window = min(float(window_s), MAX_WINDOW_S)
    return window, window - float(overlap_s)


def plan_windows(
    duration_s: float,
    window_s: float,
    hop_s: float,
    max_s: float = MAX_WINDOW_S,
    min_tail_s: float = MIN_TAIL_S,
) -> list[tuple[float, float]]:
    """Fixed windows ``[k*hop, k*hop + window)`` covering ``[0, duration_s]``.

    The last window ends at ``duration_s``. If it would add less than ``min_tail_s`` of new
    content beyond the previous window, it is merged into the previous window when that stays
    within ``max_s``, and dropped otherwise. Returns [] for a non-positive duration.
    """
    if duration_s <= 0:
        return []
    if duration_s <= window_s + 1e-9:
        return [(0.0, duration_s)]
    n = math.ceil((duration_s - window_s) / hop_s - 1e-9) + 1
    windows = [(k * hop_s, min(k * hop_s + window_s, duration_s)) for k in range(n)]
    prev_start, prev_end = windows[-2]
    if duration_s - prev_end < min_tail_s:
        windows.pop()
        if duration_s - prev_start <= max_s + 1e-9:
            windows[-1] = (prev_start, duration_s)
    return windows


# --------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class AudioProbe:
    """What the demux-only pass learned about an audio stream."""

    codec: str
    duration_s: float  # what the packets (or samples) actually hold
    declared_s: float | None  # what the header claims, when it says anything

    @property
    def truncated(self) -> bool:
        """The header promises clearly more audio than the file holds."""
        return self.declared_s is not None and self.declared_s - self.duration_s > max(
            TRUNCATION_TOLERANCE_S, 0.02 * self.declared_s
        )


def stream_declared_duration(container: Any, stream: Any) -> float | None:
    """The stream's (or else the container's) header duration in seconds, if any."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def open_error_code(exc: BaseException) -> str:
    """Dead-letter code for an exception raised while opening or demuxing a media file."""
    import av

    if isinstance(exc, FileNotFoundError | av.error.FileNotFoundError):
        return codes.FILE_NOT_FOUND
    if isinstance(exc, av.error.DecoderNotFoundError):
        return codes.CODEC_UNSUPPORTED
    return codes.MEDIA_CORRUPT


def check_file(path: str) -> None:
    """Raise RecordError for a missing or empty file (before FFmpeg gives a vaguer message)."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError as exc:
        raise RecordError(STAGE, codes.FILE_NOT_FOUND, f"no such file: {path}") from exc
    if size == 0:
        raise RecordError(STAGE, codes.EMPTY_FILE, f"file is empty (0 bytes): {path}")


def open_media(path: str) -> Any:
    """Open a local media file with PyAV; RecordError with a dead-letter code when it cannot be.

    Container and stream tags may be in any encoding (Latin-1 titles in old MP4s, raw bytes):
    PyAV decodes them as UTF-8 when it opens the file, and undecodable bytes become U+FFFD
    instead of failing the open (``metadata_errors="replace"``). The pipeline never uses tags.
    """
    import av

    check_file(path)
    try:
        return av.open(path, "r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError, UnicodeError) as exc:
        raise RecordError(STAGE, open_error_code(exc), f"cannot open media: {exc}") from exc


# A later part of a split asset starts decoding this long before its first window (decoders such
# as mp3's need a few frames to settle after a seek; those samples are dropped).
PART_PREROLL_S = 1.0


def _seek_near(container: Any, stream: Any, at_s: float) -> tuple[float, float] | None:
    """Seek ``stream`` to a keyframe at or before ``at_s`` (seconds from its start): (the time
    sought, the stream's start time), or None when the demuxer cannot seek (the part then decodes
    from the start and counts samples, as a whole decode does)."""
    import av

    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    if at_s <= 0 or stream.time_base is None:
        return None
    try:
        container.seek(int((start + at_s) / stream.time_base), stream=stream, backward=True)
    except av.error.FFmpegError:
        return None
    return at_s, start


def rewind(container: Any) -> bool:
    """Seek back to the start; False when the demuxer cannot seek (an FLV without an index)."""
    import av

    try:
        container.seek(0)
    except av.error.FFmpegError:
        return False
    return True


def _decoder_name(stream: Any) -> str:
    """The stream's decoder name; RecordError codec_unsupported when FFmpeg has none."""
    ctx = getattr(stream, "codec_context", None)
    if ctx is None or ctx.codec is None:
        raise RecordError(STAGE, codes.CODEC_UNSUPPORTED, f"no decoder for stream #{stream.index}")
    return str(ctx.codec.name)


def probe_audio(container: Any, stream: Any) -> AudioProbe:
    """Measure an audio stream by demuxing its packets (decoding only if they have no times).

    Tries to leave the container rewound to the start (the caller reopens the file to decode:
    some demuxers cannot seek). Raises RecordError on unreadable input.
    """
    import av

    codec = _decoder_name(stream)
    declared = stream_declared_duration(container, stream)
    first: float | None = None
    end: float | None = None
    time_base = stream.time_base
    try:
        if time_base:
            # Integer timestamps per packet (no Fraction arithmetic in the loop: this pass runs
            # over every packet of the file before decoding starts).
            lo: int | None = None
            hi: int | None = None
            for packet in container.demux(stream):
                pts = packet.pts
                if pts is None:
                    continue
                stop = pts + (packet.duration or 0)
                if lo is None or hi is None:
                    lo, hi = pts, stop
                else:
                    lo = pts if pts < lo else lo
                    hi = stop if stop > hi else hi
            if lo is not None and hi is not None:
                first, end = float(lo * time_base), float(hi * time_base)
        rewind(container)
        if first is None or end is None:
            # No timestamps: count decoded samples instead (slow path, bounded memory).
            samples = 0
            rate = 0
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
            rewind(container)
            measured = samples / rate if rate else 0.0
        else:
            measured = max(0.0, end - first)
    except av.error.FFmpegError as exc:
        raise RecordError(STAGE, open_error_code(exc), f"cannot demux audio: {exc}") from exc
    return AudioProbe(codec=codec, duration_s=measured, declared_s=declared)


# --------------------------------------------------------------------------------------------
# Encoding


def encode_audio_window(samples: np.ndarray, audio_format: str, sample_rate: int) -> bytes:
    """Encode mono int16 ``samples`` into an in-memory file of ``audio_format`` (mp3|wav|ogg)."""
    import av

    fmt, codec, bit_rate = AUDIO_ENCODINGS[audio_format]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=sample_rate, layout=SEGMENT_LAYOUT)
        if bit_rate:
            stream.bit_rate = bit_rate
        step = 8192
        for i in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[None, i : i + step]), format="s16", layout="mono"
            )
            frame.sample_rate = sample_rate
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# The stage


def segment_audio(
    asset: Mapping[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Segment rows (``input_kind="audio"``) for one audio asset, produced lazily.

    The configuration was checked before any work (``validate_segmentation``); data errors raise
    RecordError (a window that fails carries its position).
    ``emb`` is accepted for a uniform stage signature (audio segmentation does not depend on
    embedding parameters).
    """
    del emb
    audio_format = seg.audio_format.lower()
    window, hop = window_params(seg.audio_window_s, seg.audio_overlap_s)
    return _segment_audio(dict(asset), audio_format, window, hop, s3_endpoint_url)


def _segment_audio(
    asset: dict[str, Any],
    audio_format: str,
    window: float,
    hop: float,
    s3_endpoint_url: str | None,
) -> Iterator[dict[str, Any]]:

    with local_source(asset, s3_endpoint_url, "an audio asset") as source:
        yield from audio_file_rows(asset, source, audio_format, window, hop)


def audio_file_rows(
    asset: dict[str, Any], source: str, audio_format: str, window: float, hop: float
) -> Iterator[dict[str, Any]]:
    """The audio segment rows of the local media file ``source`` (its first audio stream), for
    ``asset``; the video decoder calls it for a file that holds only audio."""
    with open_media(source) as container:
        if not container.streams.audio:
            raise RecordError(
                STAGE, codes.NO_AUDIO_STREAM, f"no audio stream in {asset.get('uri')}"
            )
        index = container.streams.audio[0].index
        probe = probe_audio(container, container.streams.audio[0])
    # A fresh demuxer for the decoding pass: not every container can seek back to the start.
    with open_media(source) as container:
        stream = container.streams[index]
        yield from _stream_windows(asset, container, stream, probe, audio_format, window, hop)


def _stream_windows(
    asset: dict[str, Any],
    container: Any,
    stream: Any,
    probe: AudioProbe,
    audio_format: str,
    window: float,
    hop: float,
) -> Iterator[dict[str, Any]]:
    """Decode once, yield one row per planned window; dead-letter the window that fails."""
    import av

    rate = SEGMENT_SAMPLE_RATE
    planned_s = probe.duration_s
    windows = plan_windows(planned_s, window, hop)
    if not windows:
        raise RecordError(STAGE, codes.MEDIA_EMPTY, "the audio stream holds no samples")
    # A file cut short: embed what it holds, and account for the rest with one more row.
    count = len(windows) + (1 if probe.truncated else 0)
    bounds = [(round(s * rate), round(e * rate)) for s, e in windows]
    # A part of a split asset (Modality.split) decodes its own windows [first, last) only.
    mine = part_segments(asset, count)
    first, last = mine.start, min(mine.stop, len(windows))
    if first >= last:
        # No window of this part's own (fewer segments than parts, or only the truncation row).
        if probe.truncated and len(windows) in mine:
            raise _truncated_tail(len(windows), count, planned_s, probe.declared_s)
        return
    tolerance = round(TRUNCATION_TOLERANCE_S * rate)

    def failed(k: int, code: str, message: str) -> RecordError:
        return RecordError(
            STAGE, code, message, segment_index=k, segment_count=count,
            start_s=windows[k][0], end_s=windows[k][1],
        )  # fmt: skip

    def row(k: int, end_sample: int, data: bytes) -> dict[str, Any]:
        return segment_row(
            asset, segment_index=k, segment_count=count, input_kind="audio",
            input_format=audio_format, input_bytes=data, start_s=bounds[k][0] / rate,
            end_s=end_sample / rate,
        )  # fmt: skip

    resampler = av.AudioResampler(format="s16", layout=SEGMENT_LAYOUT, rate=rate)
    chunks: list[np.ndarray] = []  # resampled samples from sample index `base` on
    base = 0  # absolute index of chunks' first sample
    held = 0  # samples held in chunks
    k = first  # next window to emit
    # A later part starts decoding a little before its first window: the timeline of the whole
    # decode (samples counted from the stream's start) is then taken from the first frame's
    # timestamp, within a few milliseconds of a whole decode's.
    sought = _seek_near(container, stream, windows[first][0] - PART_PREROLL_S) if first else None
    stream_start = sought[1] if sought is not None else 0.0

    def take(start: int, stop: int) -> np.ndarray:
        nonlocal chunks
        joined = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        chunks = [joined]
        return joined[start - base : stop - base]

    def drop_before(sample: int) -> None:
        nonlocal chunks, base, held
        if sample <= base or not chunks:
            return
        joined = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        cut = min(sample - base, len(joined))
        chunks = [joined[cut:]] if cut < len(joined) else []
        base += cut
        held = len(joined) - cut

    def frames() -> Iterator[Any]:
        nonlocal base
        placed = sought is None
        for frame in container.decode(stream):
            if not placed:
                placed = True
                if frame.time is not None:
                    base = max(0, round((float(frame.time) - stream_start) * rate))
            frame.pts = None  # timeline = sample count; ignore gaps and odd timestamps
            yield from resampler.resample(frame)
        yield from resampler.resample(None)

    try:
        for out in frames():
            pcm = out.to_ndarray().reshape(-1)
            if pcm.size == 0:
                continue
            chunks.append(pcm)
            held += pcm.size
            if k < last and base < bounds[k][0]:
                drop_before(bounds[k][0])  # a later part: what precedes its first window
            while k < last and base + held >= bounds[k][1]:
                start, stop = bounds[k]
                data = encode_audio_window(take(start, stop), audio_format, rate)
                yield row(k, stop, data)
                k += 1
                drop_before(bounds[k][0] if k < len(windows) else base + held)
            if k >= last and last < len(windows):
                return  # a part's windows are all out: the rest is another part's
    except (av.error.FFmpegError, ValueError) as exc:
        if k < last:
            raise failed(k, codes.MEDIA_CORRUPT, f"decoding failed at window {k}: {exc}") from exc
        return

    if k < last:
        total = base + held
        start, stop = bounds[k]
        if stop - total > tolerance or total <= start or k + 1 < len(windows):
            raise failed(
                k, codes.MEDIA_TRUNCATED,
                f"decoded audio ends at {total / rate:.2f} s; the packets hold "
                f"{planned_s:.2f} s; windows from {k} on are missing",
            )  # fmt: skip
        # The stream ended a little early (estimates, resampler delay): the last window is
        # shorter than planned.
        yield row(k, total, encode_audio_window(take(start, total), audio_format, rate))
    if probe.truncated and len(windows) in mine:
        raise _truncated_tail(len(windows), count, planned_s, probe.declared_s)


def _truncated_tail(
    index: int, count: int, planned_s: float, declared: float | None
) -> RecordError:
    """The row accounting for the audio a cut-short file's header promises beyond its end."""
    declared_s = planned_s if declared is None else declared  # set whenever truncated
    return RecordError(
        STAGE, codes.MEDIA_TRUNCATED,
        f"the file holds {planned_s:.2f} s of audio; its header says {declared_s:.2f} s",
        segment_index=index, segment_count=count, start_s=planned_s, end_s=declared_s,
    )  # fmt: skip
