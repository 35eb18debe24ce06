"""Deterministic synthetic audio and video for tests, benchmarks and the demo.

Everything here is generated from a seed with numpy and written with PyAV, so test media never has
to be committed. The signals are cheap imitations, not realistic content, but they have the
structure the segmenters and the local endpoint's feature extractors care about:

- ``kind="speech"``: voiced "syllables" (a harmonic series on a wandering pitch, shaped by two or
  three formant bumps) grouped into words separated by pauses;
- ``kind="music"``: chords and single notes on a tempo grid, each note with harmonics and a
  decaying envelope;
- video: moving coloured shapes on a slowly changing gradient, so that consecutive frames differ
  and a segment's frames are not all identical; the keyframe interval (``gop``) is explicit so
  tests can make keyframes dense (stream copy) or sparse (re-encode).

PyAV is imported inside the functions (the package stays cheap to import).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

# Container format and codec per file extension. There is no libvorbis in PyAV's wheels, so .ogg
# is Opus in Ogg; .m4a is AAC in an MP4 (ipod) container.
_AUDIO_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("wav", "pcm_s16le"),
    ".mp3": ("mp3", "libmp3lame"),
    ".ogg": ("ogg", "libopus"),
    ".opus": ("ogg", "libopus"),
    ".flac": ("flac", "flac"),
    ".m4a": ("ipod", "aac"),
}
# Opus only takes 8/12/16/24/48 kHz.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

_VIDEO_FORMATS: dict[str, tuple[str, str, str]] = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),
}


# --------------------------------------------------------------------------------------------
# Signals


def speech_like(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A mono float32 signal in [-1, 1] that looks like speech to a spectrogram.

    Words of 2-5 syllables; each syllable is a harmonic series on a pitch of 90-240 Hz with a
    little vibrato, weighted by formant bumps picked from a small vowel table; words are separated
    by 150-700 ms pauses and carry a faint noise floor.
    """
    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
              (660, 1720, 2410), (490, 1350, 1690)]  # fmt: skip
    nyquist = sample_rate / 2
    pos = int(rng.integers(0, sample_rate // 5))
    while pos < n:
        for _ in range(int(rng.integers(2, 6))):
            length = int(rng.uniform(0.08, 0.30) * sample_rate)
            if pos >= n:
                break
            length = min(length, n - pos)
            t = np.arange(length, dtype=np.float64) / sample_rate
            f0 = rng.uniform(90, 240) * (1 + 0.03 * np.sin(2 * math.pi * rng.uniform(3, 7) * t))
            phase = 2 * math.pi * np.cumsum(f0) / sample_rate
            formants = vowels[int(rng.integers(0, len(vowels)))]
            syllable = np.zeros(length, dtype=np.float64)
            for h in range(1, 40):
                freq = h * float(f0.mean())
                if freq >= nyquist * 0.95:
                    break
                weight = sum(math.exp(-(((freq - f) / 120.0) ** 2)) for f in formants) + 0.02
                syllable += weight / h**0.5 * np.sin(h * phase)
            syllable *= np.hanning(length)
            peak = float(np.max(np.abs(syllable))) or 1.0
            out[pos : pos + length] += (0.6 * syllable / peak).astype(np.float32)
            pos += length + int(rng.uniform(0.01, 0.06) * sample_rate)
        pos += int(rng.uniform(0.15, 0.7) * sample_rate)
    out += (0.005 * rng.standard_normal(n)).astype(np.float32)
    return np.clip(out, -1.0, 1.0)


def music_like(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A mono float32 signal in [-1, 1] made of chords and notes on a tempo grid."""
    rng = np.random.default_rng(seed)
    n = max(1, round(seconds * sample_rate))
    out = np.zeros(n, dtype=np.float32)
    beat = 60.0 / rng.uniform(80, 140)
    root = int(rng.integers(45, 58))  # MIDI note of the key's root
    scale = [0, 2, 4, 5, 7, 9, 11]
    nyquist = sample_rate / 2
    start = 0.0
    while start < seconds:
        beats = int(rng.choice([1, 1, 2, 2, 4]))
        length = min(int(beats * beat * sample_rate), n - int(start * sample_rate))
        if length <= 0:
            break
        degree = int(rng.integers(0, 7))
        if rng.random() < 0.5:  # a triad
            notes = [
                root + 12 + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)
            ]
        else:  # a melody note an octave up
            notes = [root + 24 + scale[degree]]
        t = np.arange(length, dtype=np.float64) / sample_rate
        env = np.exp(-t * rng.uniform(1.5, 4.0)) * np.minimum(1.0, t / 0.01)
        tone = np.zeros(length, dtype=np.float64)
        for midi in notes:
            freq = 440.0 * 2 ** ((midi - 69) / 12)
            for h, amp in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)):
                if h * freq < nyquist * 0.95:
                    tone += amp * np.sin(2 * math.pi * h * freq * t)
        tone *= env / max(1.0, float(np.max(np.abs(tone))))
        i = int(start * sample_rate)
        out[i : i + length] += (0.7 * tone).astype(np.float32)
        start += beats * beat
    return np.clip(out, -1.0, 1.0)


def _audio_signal(kind: str, seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    if kind == "speech":
        return speech_like(seconds, sample_rate, seed)
    if kind == "music":
        return music_like(seconds, sample_rate, seed)
    if kind == "tone":
        t = np.arange(max(1, round(seconds * sample_rate))) / sample_rate
        return (0.5 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)
    raise ValueError(f"kind must be 'speech', 'music' or 'tone', not {kind!r}")


def _audio_frames(signal: np.ndarray, sample_rate: int, layout: str, chunk: int) -> Iterator[Any]:
    """Float mono ``signal`` as s16 AudioFrames of ``chunk`` samples (stereo by duplication)."""
    import av

    pcm = (np.clip(signal, -1.0, 1.0) * 32767).astype(np.int16)
    channels = 2 if layout == "stereo" else 1
    for i in range(0, len(pcm), chunk):
        block = pcm[i : i + chunk]
        # Packed s16 is one plane of interleaved samples: shape (1, samples * channels).
        data = np.repeat(block, channels)[None, :] if channels > 1 else block[None, :]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="s16", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = i
        yield frame


# --------------------------------------------------------------------------------------------
# Files


def make_tone_audio(
    path: str | os.PathLike[str],
    seconds: float,
    kind: str = "speech",
    seed: int = 0,
    sample_rate: int = 16000,
    stereo: bool = False,
) -> str:
    """Write ``seconds`` of speech-like or music-like audio to ``path``; returns the path.

    The format follows the extension: .wav (PCM s16), .mp3 (LAME), .ogg/.opus (Opus in Ogg),
    .flac, .m4a (AAC). Same arguments, same samples (the encoders themselves are deterministic
    too, so the bytes are stable on one PyAV build).
    """
    import av

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _AUDIO_FORMATS:
        raise ValueError(
            f"unsupported audio extension {ext!r}; use one of {sorted(_AUDIO_FORMATS)}"
        )
    fmt, codec = _AUDIO_FORMATS[ext]
    if codec == "libopus" and sample_rate not in _OPUS_RATES:
        sample_rate = 48000 if sample_rate > 24000 else 24000 if sample_rate > 16000 else 16000
    layout = "stereo" if stereo else "mono"
    signal = _audio_signal(kind, seconds, sample_rate, seed)
    with av.open(path, "w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=sample_rate, layout=layout)
        for frame in _audio_frames(signal, sample_rate, layout, 4096):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def make_audio_excerpt(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    start_s: float,
    seconds: float,
    sample_rate: int = 16000,
) -> str:
    """Write ``seconds`` of ``source`` from ``start_s`` on to ``path`` (format from its
    extension, as :func:`make_tone_audio`): an excerpt of a recording, decoded and encoded
    again, as someone would clip it. Returns the path."""
    import av

    chunks: list[np.ndarray] = []
    with av.open(os.fspath(source)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    first = max(0, round(start_s * sample_rate))
    clip = samples[first : first + round(seconds * sample_rate)]
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _AUDIO_FORMATS:
        raise ValueError(
            f"unsupported audio extension {ext!r}; use one of {sorted(_AUDIO_FORMATS)}"
        )
    fmt, codec = _AUDIO_FORMATS[ext]
    with av.open(path, "w", format=fmt) as out_container:
        stream: Any = out_container.add_stream(codec, rate=sample_rate, layout="mono")
        for frame in _audio_frames(clip.astype(np.float32), sample_rate, "mono", 4096):
            out_container.mux(stream.encode(frame))
        out_container.mux(stream.encode(None))
    return path


def _video_frame_rgb(
    index: int,
    fps: float,
    width: int,
    height: int,
    shapes: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
) -> np.ndarray:
    """One RGB frame: a drifting gradient plus moving rectangles and discs."""
    t = index / fps
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = ((xx * 160 // max(1, width)) + int(40 * t)) % 256
    img[..., 1] = ((yy * 160 // max(1, height)) + int(25 * t)) % 256
    img[..., 2] = (96 + int(60 * math.sin(t / 3.0))) % 256
    for x0, y0, vx, vy, size, r, g, b, disc in shapes:
        cx = (x0 + vx * t) % width
        cy = (y0 + vy * t) % height
        half = max(1.0, size / 2)
        if disc > 0.5:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= half**2
        else:
            mask = (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
        img[mask] = (int(r), int(g), int(b))
    return img


def make_video(
    path: str | os.PathLike[str],
    seconds: float,
    fps: float = 10,
    size: tuple[int, int] = (96, 64),
    with_audio: bool = True,
    gop: int = 10,
    seed: int = 0,
    audio_kind: str = "music",
    audio_rate: int = 16000,
    preset: str = "ultrafast",
    crf: int = 30,
    bframes: int | None = None,
) -> str:
    """Write a video of moving coloured shapes; returns the path.

    ``size`` is (width, height), both even. ``gop`` is the keyframe interval in frames: the
    encoder places a keyframe exactly every ``gop`` frames (scene-cut keyframes are off) so tests
    control keyframe density. ``bframes`` (None = preset default; ultrafast has none) makes the
    packet order differ from the display order. The container follows the extension: .mp4, .mov,
    .mkv (H.264 + AAC) or .webm (VP9 + Opus).
    """
    import av

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _VIDEO_FORMATS:
        raise ValueError(
            f"unsupported video extension {ext!r}; use one of {sorted(_VIDEO_FORMATS)}"
        )
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size must be even for yuv420p, got {size}")
    fmt, vcodec, acodec = _VIDEO_FORMATS[ext]
    rng = np.random.default_rng(seed)
    shapes = np.column_stack(
        [
            rng.uniform(0, width, 4),
            rng.uniform(0, height, 4),
            rng.uniform(-0.4, 0.4, 4) * width,
            rng.uniform(-0.4, 0.4, 4) * height,
            rng.uniform(0.15, 0.35, 4) * min(width, height),
            rng.integers(0, 256, (4, 3)),
            rng.integers(0, 2, 4),
        ]
    )
    yy, xx = np.mgrid[0:height, 0:width]
    n_frames = max(1, round(seconds * fps))
    from fractions import Fraction

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, "w", format=fmt) as out:
        vstream: Any = out.add_stream(vcodec, rate=rate)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        if vcodec == "libx264":
            params = f"keyint={gop}:min-keyint={gop}:scenecut=0"
            if bframes is not None:
                params += f":bframes={bframes}"
            vstream.options = {"preset": preset, "crf": str(crf), "x264-params": params}
        else:
            vstream.codec_context.gop_size = gop
            vstream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "40", "b": "0"}
        astream: Any = None
        if with_audio:
            a_rate = audio_rate
            if acodec == "libopus" and a_rate not in _OPUS_RATES:
                a_rate = 16000
            astream = out.add_stream(acodec, rate=a_rate, layout="mono")
            signal = _audio_signal(audio_kind, n_frames / fps, a_rate, seed)
            audio_iter = _audio_frames(signal, a_rate, "mono", 4096)
            next_audio = next(audio_iter, None)
        for i in range(n_frames):
            img = _video_frame_rgb(i, fps, width, height, shapes, yy, xx)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(vstream.encode(frame))
            # Interleave audio up to the video clock so the muxer does not buffer it all.
            while astream is not None and next_audio is not None:
                if next_audio.pts / next_audio.sample_rate > (i + 1) / fps:
                    break
                out.mux(astream.encode(next_audio))
                next_audio = next(audio_iter, None)
        out.mux(vstream.encode(None))
        if astream is not None:
            while next_audio is not None:
                out.mux(astream.encode(next_audio))
                next_audio = next(audio_iter, None)
            out.mux(astream.encode(None))
    return path


def make_truncated_copy(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], fraction: float = 0.5
) -> str:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a download cut short)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    size = os.path.getsize(src)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.read(int(size * fraction)))
    return os.fspath(dst)


def make_not_media(path: str | os.PathLike[str], size: int = 4096, seed: int = 0) -> str:
    """Random bytes under a media extension: a file no demuxer recognises."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        fh.write(b"NOT MEDIA\n" + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return os.fspath(path)
