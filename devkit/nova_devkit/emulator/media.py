"""Decoding of request media (Pillow for images, PyAV for audio and video).

The endpoint decodes everything it is sent, as the service must: to check the declared format, to
measure a clip's duration (the 30 s limit is on decoded time, not on a header), and to compute the
content features. Heavy imports stay inside the functions so importing the emulator stays cheap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nova_devkit.emulator.features import SAMPLE_RATE, image_to_thumbnail

# Declared format -> names PyAV's demuxer reports for it (container.format.name is a comma list).
AUDIO_DEMUXERS: dict[str, set[str]] = {"mp3": {"mp3"}, "wav": {"wav"}, "ogg": {"ogg"}}
VIDEO_DEMUXERS: dict[str, set[str]] = {
    "mp4": {"mp4", "mov"},
    "mov": {"mov", "mp4"},
    "3gp": {"3gp", "mov", "mp4"},
    "mkv": {"matroska"},
    "webm": {"webm", "matroska"},
    "flv": {"flv"},
    "mpeg": {"mpeg", "mpegts", "mpegvideo"},
    "mpg": {"mpeg", "mpegts", "mpegvideo"},
    "wmv": {"asf"},
}
# Declared image format -> Pillow's format name.
IMAGE_FORMATS: dict[str, str] = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}


class MediaError(Exception):
    """The media cannot be decoded, or is not what its declared format says."""


@dataclass
class DecodedImage:
    """An image reduced to what the endpoint needs."""

    pil_format: str
    width: int
    height: int
    thumb: np.ndarray | None


@dataclass
class DecodedMedia:
    """An audio or video file reduced to what the endpoint needs.

    ``audio`` is mono 16 kHz float32 from the first audio sample; ``frames`` are (seconds from the
    first video frame, thumbnail) pairs sampled at the requested rate. ``over_limit`` is set when
    decoding stopped early because the clip is longer than ``max_seconds``.
    """

    demuxer: str
    duration_s: float
    has_audio: bool
    has_video: bool
    audio: np.ndarray | None = None
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    over_limit: bool = False


def decode_image(
    data: bytes, declared: str, check_format: bool, max_pixels: int, thumbnail: bool = True
) -> DecodedImage:
    """Open, verify and thumbnail an image; ``declared`` is the request's ``format``.
    ``thumbnail=False`` reads the header only (format, size, pixel limit): no thumbnail."""
    from PIL import Image

    thumb = None
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise MediaError(f"image is {im.width}x{im.height}, over {max_pixels} pixels")
            pil_format = str(im.format or "")
            if thumbnail:
                im.load()
                thumb = image_to_thumbnail(im)
            size = im.size
    except MediaError:
        raise
    except Exception as exc:  # Pillow raises many types for bad data; all mean "not an image".
        raise MediaError(f"image cannot be decoded ({type(exc).__name__})") from exc
    if check_format and IMAGE_FORMATS[declared] != pil_format:
        raise MediaError(f"image data is {pil_format or 'unknown'}, not {declared}")
    return DecodedImage(pil_format=pil_format, width=size[0], height=size[1], thumb=thumb)


def _to_mono16k(resampler: Any, frame: Any) -> list[np.ndarray]:
    return [f.to_ndarray().reshape(-1).astype(np.float32) for f in resampler.resample(frame)]


def decode_media(
    data: bytes,
    declared: str,
    kind: str,
    *,
    check_format: bool,
    max_seconds: float | None,
    frame_rate: float = 2.0,
) -> DecodedMedia:
    """Decode audio (``kind="audio"``) or video (``kind="video"``, with its audio track if any).

    Stops early (``over_limit``) once decoded time passes ``max_seconds``.
    """
    import av

    table = AUDIO_DEMUXERS if kind == "audio" else VIDEO_DEMUXERS
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:  # PyAV raises FFmpeg error subclasses; all mean "cannot open".
        raise MediaError(f"{kind} cannot be decoded ({type(exc).__name__})") from exc
    try:
        demuxer = str(container.format.name)
        if check_format and not (set(demuxer.split(",")) & table[declared]):
            raise MediaError(f"{kind} data is {demuxer}, not {declared}")
        vstreams = list(container.streams.video) if kind == "video" else []
        astreams = list(container.streams.audio)
        if kind == "video" and not vstreams:
            raise MediaError("video has no video stream")
        if kind == "audio" and not astreams:
            raise MediaError("audio has no audio stream")
        vstream = vstreams[0] if vstreams else None
        astream = astreams[0] if astreams else None
        rate = float(vstream.average_rate or vstream.guessed_rate or 25) if vstream else 25.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        audio_seconds = 0.0
        frames: list[tuple[float, np.ndarray]] = []
        t0: float | None = None
        next_sample = 0.0
        video_seconds = 0.0
        over = False
        streams = [s for s in (vstream, astream) if s is not None]
        for frame in container.decode(*streams):
            if isinstance(frame, av.AudioFrame):
                chunks.extend(_to_mono16k(resampler, frame))
                audio_seconds += frame.samples / float(frame.sample_rate or SAMPLE_RATE)
            elif isinstance(frame, av.VideoFrame):
                t = frame.time if frame.time is not None else len(frames) / rate
                t0 = t if t0 is None else t0
                rel = t - t0
                video_seconds = max(video_seconds, rel + 1.0 / rate)
                if rel + 1e-6 >= next_sample:
                    rgb = frame.to_ndarray(format="rgb24", width=32, height=32)
                    frames.append((rel, np.ascontiguousarray(rgb, dtype=np.uint8)))
                    next_sample += 1.0 / frame_rate
            decoded = video_seconds if vstream is not None else audio_seconds
            if max_seconds is not None and decoded > max_seconds:
                over = True
                break
        if astream is not None and not over:
            chunks.extend(_to_mono16k(resampler, None))
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"{kind} cannot be decoded ({type(exc).__name__}: {exc})") from exc
    finally:
        container.close()
    audio = np.concatenate(chunks) if chunks else None
    has_audio = astream is not None and audio is not None and audio.size > 0
    return DecodedMedia(
        demuxer=demuxer,
        # A video's length is its picture's: AAC priming/padding makes the audio track run a
        # frame or two longer, which must not push a 30 s clip over the limit.
        duration_s=video_seconds if vstream is not None else audio_seconds,
        has_audio=has_audio,
        has_video=vstream is not None,
        audio=audio if has_audio else None,
        frames=frames,
        over_limit=over,
    )
